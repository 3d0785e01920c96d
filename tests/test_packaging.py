"""The extras install a working set: what `pip install semzip[all]` brings can be imported together."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _extras() -> dict[str, list[str]]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]


def _closure(name: str, extras: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for req in extras[name]:
        m = re.fullmatch(r"semzip\[([a-z,]+)\]", req)
        if m:
            for sub in m.group(1).split(","):
                out += _closure(sub, extras)
        else:
            out.append(req)
    return out


def _pkg(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_every_extra_with_compressai_caps_pyarrow():
    """compressai pins numpy<2; pyarrow 26 needs numpy>=2 without declaring it (issue 15, item 1)."""
    extras = _extras()
    for name in extras:
        reqs = _closure(name, extras)
        if any(_pkg(r) == "compressai" for r in reqs):
            caps = [r for r in reqs if _pkg(r) == "pyarrow" and "<26" in r.replace(" ", "")]
            assert caps, f"extra [{name}] installs compressai without pyarrow<26"


def test_fid_and_kid_come_with_the_eval_extra():
    extras = _extras()
    for name in ("eval", "all", "dev"):
        assert "torch-fidelity" in {_pkg(r) for r in _closure(name, extras)}, name


def test_the_backends_and_pyarrow_import_together():
    """In the environment the tests run in (the README's), every backend library imports in one process and
    parquet round-trips beside compressai's numpy."""
    code = (
        "import numpy, torch, torchvision, open_clip, compressai, torch_fidelity, torchmetrics, pyarrow as pa\n"
        "import pyarrow.parquet as pq, io\n"
        "buf = io.BytesIO(); pq.write_table(pa.table({'x': numpy.arange(3)}), buf); buf.seek(0)\n"
        "assert pq.read_table(buf).column('x').to_numpy().tolist() == [0, 1, 2]\n"
        "print(numpy.__version__, pa.__version__, torch.__version__, torchvision.__version__)\n"
    )
    needed = ("torchvision", "open_clip", "compressai", "torch_fidelity", "pyarrow")
    import importlib.util

    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not the README's test environment (missing {', '.join(missing)})")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
