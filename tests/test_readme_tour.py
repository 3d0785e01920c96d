"""The README tour, run as written (issue 14): every line of its ``bash`` block that needs no model weights runs
in a temporary folder holding small stand-ins for the files it names (photos/, big/, clip.parquet, ...), in the
README's order, and must exit 0. The README cannot drift from the CLI again.

Lines are skipped only by the rules in SKIP (each says why); the test fails if a line matches no rule and does
not run, and if fewer lines run than RUN_AT_LEAST (a README whose lines all turned into skips would pass
otherwise)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semzip.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"

# (rule, why): a line matching the rule (a regular expression searched in the line) is skipped
SKIP = [
    (r"hf:|open_clip:[^ ]*/models|/models/|stable-unclip|sd-img2img",
     "names model weights (a CLIP encoder, a diffusion generator or refiner) that a test machine lacks"),
    (r"^semzip (search|blend|atoms) ", ("a text query needs an encoder with a text tower (CLIP weights); the "
                                         "offline thumbnail encoder refuses it")),
    (r"^semzip text ", "caption coding needs the smollm2-135m language model weights"),
    (r"--codec image-text", ("the image-text codec codes captions with the smollm2-135m language model "
                             "(weights); benchmarks/readme_tour.py times it")),
    (r"--engine ray", "starts a Ray cluster of 8 workers (tests/test_distributed.py covers the engine)"),
    (r"^semzip train-lic ", "trains for minutes on a training set"),
    (r"^semzip eval ", "LPIPS and CLIP metrics need weights; on Kodak it takes minutes (benchmarks/results/readme_tour.md)"),
]
RUN_AT_LEAST = 9


def tour_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("## Tour"):]
    block = re.search(r"```bash\n(.*?)```", tour, re.DOTALL)
    assert block, "README.md: no ```bash block under ## Tour"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def skip_reason(line: str) -> str | None:
    for rule, why in SKIP:
        if re.search(rule, line):
            return why
    return None


def _image(path: Path, seed: int) -> None:
    from semzip.data.scenes import write_scenes

    tmp = path.parent / f".scene{seed}"
    src = write_scenes(tmp, n=1, seed=seed)[0]
    Image.open(src).convert("RGB").save(path)
    src.unlink()
    tmp.rmdir()


def _stand_ins(root: Path) -> None:
    """Small versions of the files the tour names."""
    from semzip.data.scenes import write_scenes

    write_scenes(root / "photos", n=30)
    _image(root / "photos" / "IMG_0042.jpg", 42)
    for f in write_scenes(root / "more_photos", n=3, seed=1):  # new names: add refuses names already there
        f.rename(f.with_name("new_" + f.name))
    write_scenes(root / "big", n=30, seed=2)
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    x = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pq.write_table(pa.table({"key": [f"img{i:03d}" for i in range(40)], "embedding": list(x)}),
                   root / "clip.parquet")


def test_every_tour_line_is_run_or_skipped_by_a_rule():
    lines = tour_lines()
    assert lines, "the README tour is empty"
    run = [ln for ln in lines if skip_reason(ln) is None]
    assert len(run) >= RUN_AT_LEAST, f"only {len(run)} tour lines run without weights: {run}"
    assert all(ln.startswith("semzip ") for ln in lines)


def test_readme_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))  # embedding caches stay in the folder
    _stand_ins(tmp_path)
    runner = CliRunner()
    ran, skipped = [], []
    for line in tour_lines():
        why = skip_reason(line)
        if why is not None:
            skipped.append((line, why))
            continue
        args = shlex.split(line, comments=True)
        assert args[0] == "semzip"
        r = runner.invoke(app, args[1:], env={**os.environ, "COLUMNS": "200"})
        assert r.exit_code == 0, f"README tour line failed ({r.exit_code}): {line}\n{r.output}"
        ran.append(line)
    assert len(ran) >= RUN_AT_LEAST, skipped
    assert (tmp_path / "demo" / "collection.smz").is_file() and (tmp_path / "emb.npy").is_file()
    assert (tmp_path / "out" / "IMG_0042.png").is_file() or any((tmp_path / "out").glob("IMG_0042*"))
