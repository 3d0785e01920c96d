"""Time the README tour on this machine: every line of its ``bash`` block, as written, in a fresh process,
on real inputs where they exist here (writes benchmarks/results/readme_tour.md).

Run: ``python benchmarks/readme_tour.py`` (about 15-20 min on 2 CPU cores; ``--skip-slow`` leaves out the
lines that take minutes).

Inputs, in a temporary folder (nothing is copied into the repository):
``photos/`` = the 24 Kodak photos (768x512, linked from ../shared/data/kodak), ``kodak/`` the same with
``captions.csv`` = the LLaVA-1.5 descriptions of ../shared/data, ``big/`` and ``more_photos/`` = the training
photos of ../shared/data/train (68; ``more_photos`` takes 3 of them under new names), ``caption.txt`` = one
COCO caption, ``my_captions.txt`` = 300 COCO captions of the training split, ``clip.parquet`` and
``laion.parquet`` = 5,000 random unit vectors of 1024 dimensions (stand-ins for CLIP embeddings: the timing
depends on their count and size, not on what they mean). Lines that need model weights this machine lacks,
a Ray cluster, or a text tower are listed as not run, with the reason; the timing of each line includes
starting Python and importing semzip (what a user waits for).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "readme_tour.md"
sys.path.insert(0, str(ROOT / "tests"))
from test_readme_tour import tour_lines  # noqa: E402  (one parser for the tour: the test's)

NOT_HERE = [  # (rule, why): lines that cannot run on this machine
    (r"hf:|/models/|stable-unclip|sd-img2img", "needs model weights (CLIP, a diffusion model) not on this machine"),
    (r"--engine ray", "needs a Ray cluster of 8 workers"),
    (r"^semzip (search|blend) \S+ \"|--add |^semzip atoms ", "a text query: needs an archive made with CLIP weights"),
    (r"^semzip train-lic ", "trains the LIC for tens of minutes (docs/lic.md has its timings)"),
]
SLOW = [r"--codec image-text", r"^semzip decompress k\.smz", r"^semzip eval "]


def _inputs(root: Path) -> None:
    kodak = sorted((SHARED / "kodak").glob("*.png"))
    train = sorted(p for p in (SHARED / "train").iterdir() if p.is_file())
    if len(kodak) != 24 or len(train) < 10:
        raise SystemExit(f"expected the 24 Kodak photos and the training photos under {SHARED}")
    for name, files in (("photos", kodak), ("kodak", kodak), ("big", train)):
        (root / name).mkdir()
        for f in files:
            (root / name / f.name).symlink_to(f)
    (root / "photos" / "IMG_0042.jpg").symlink_to(kodak[0])  # the tour decodes an item of that name
    (root / "more_photos").mkdir()
    for f in train[:3]:
        (root / "more_photos" / f"new_{f.name}").symlink_to(f)
    shutil.copy(SHARED / "kodak_captions_llava15.csv", root / "captions.csv")
    caps = (SHARED / "coco_captions_val2017_dev.txt").read_text().splitlines()
    (root / "caption.txt").write_text(caps[0] + "\n")
    (root / "my_captions.txt").write_text("\n".join(caps[1500:1800]) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(0).standard_normal((5000, 1024)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = pa.table({"key": [f"img{i:05d}" for i in range(len(x))], "embedding": list(x)})
    pq.write_table(table, root / "clip.parquet")
    pq.write_table(table, root / "laion.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-slow", action="store_true", help="leave out the image-text and eval lines")
    a = ap.parse_args()
    semzip = Path(sys.executable).with_name("semzip")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _inputs(root)
        env = {**os.environ, "SEMZIP_CACHE": os.environ.get("SEMZIP_CACHE", str(Path.home() / ".cache" / "semzip")),
               "COLUMNS": "120"}
        for line in tour_lines():
            why = next((w for r, w in NOT_HERE if re.search(r, line)), None)
            if why is None and a.skip_slow and any(re.search(r, line) for r in SLOW):
                why = "left out (--skip-slow)"
            if why is not None:
                rows.append((line, None, why))
                print(f"-- {line}\n   not run: {why}", flush=True)
                continue
            args = shlex.split(line, comments=True)
            t0 = time.perf_counter()
            r = subprocess.run([str(semzip), *args[1:]], cwd=root, env=env, capture_output=True, text=True,
                               check=False)
            dt = time.perf_counter() - t0
            last = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] if r.returncode else []
            note = "" if r.returncode == 0 else f"exit {r.returncode}: {last[0] if last else ''}"
            rows.append((line, dt, note))
            print(f"-- {line}\n   {dt:.1f} s {note}", flush=True)
    load = os.getloadavg()[0]
    out = [
        "# The README tour, timed",
        "",
        f"Produced by `python benchmarks/readme_tour.py` on {datetime.date.today()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; load average {load:.1f} at the end). Each line "
        "runs as written in a fresh process (Python start and imports included), in order, in a temporary folder: "
        "`photos/` and `kodak/` = the 24 Kodak photos (768x512), `big/` = the 68 training photos, "
        "`more_photos/` = 3 of them, `captions.csv` = the LLaVA-1.5 Kodak descriptions, `my_captions.txt` = 300 "
        "COCO training captions, `clip.parquet`/`laion.parquet` = 5,000 random 1024-d unit vectors (stand-ins). "
        "The caption model's converted cache was warm.",
        "",
        "| line | seconds | note |",
        "| --- | ---: | --- |",
    ]
    for line, dt, note in rows:
        shown = line.split("  #")[0].strip().replace("|", "\\|")
        out.append(f"| `{shown}` | {'' if dt is None else f'{dt:.1f}'} | {note} |")
    RESULTS.write_text("\n".join(out) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
