"""The same archive decodes to identical integers and embeddings in separate processes.

Each archive is decoded by two fresh ``python -c`` processes (one limited to a single BLAS/OpenMP thread,
one with the default thread count) and by this process; the SHA-256 of the integer codes and of the float32
embedding bytes must agree. CPU vs GPU is not covered here: decoding runs in numpy on the CPU (the LIC's
hyper-synthesis is integer-exact numpy; only its pixel synthesis is float, see docs/lic.md), see docs/format.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semzip.api import compress_embeddings, decode_digest

TESTS = Path(__file__).parent
GOLDEN = TESTS / "data" / "golden"

CHILD = (
    "import json, sys; from semzip.api import decode_digest; "
    "print(json.dumps({p: decode_digest(p) for p in sys.argv[1:]}))"
)


def _decode_elsewhere(paths: list[Path], threads: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    if threads:
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True,
                       text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _golden_entries() -> list[tuple[str, str]]:
    """Every (format version, codec) of the stored golden set (``tests/data/golden/manifest.json``)."""
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    return [(version, kind) for version, kinds in manifest.items() for kind in kinds]


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det")
    x = np.random.default_rng(7).standard_normal((600, 48)).astype(np.float32)
    paths = [GOLDEN / f"{version}-{kind}.smz" for version, kind in _golden_entries()]
    compress_embeddings(x, tmp / "sq.smz", codec="sq", block_size=50)
    paths.append(tmp / "sq.smz")
    if importlib.util.find_spec("torch") is not None:  # encoding a collection needs torch (decoding does not)
        compress_embeddings(x, tmp / "coll.smz", codec="collection", n_atoms=32, sparsity=3, max_epochs=2,
                            block_size=64)
        paths.append(tmp / "coll.smz")
    return paths


def test_two_processes_decode_identically(archives):
    here = {str(p): decode_digest(p) for p in archives}
    one = _decode_elsewhere(archives, threads="1")
    two = _decode_elsewhere(archives, threads=None)
    assert one == two == here
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    for version, kind in _golden_entries():
        got, want = here[str(GOLDEN / f"{version}-{kind}.smz")], manifest[version][kind]
        assert got["codes_sha256"] == want["codes_sha256"], (version, kind)
        assert got["embeddings_sha256"] == want["embeddings_sha256"], (version, kind)


LIC_CHILD = (
    "import json, sys; from semzip.models.lic import integer_digest, load_lic; lic = load_lic('tiny'); "
    "s = json.loads(sys.argv[1]); streams = [bytes.fromhex(h) for h in s['streams']]; "
    "lic.decompress(streams, bytes.fromhex(s['shape'])); "
    "print(json.dumps(integer_digest(lic, streams, bytes.fromhex(s['shape']))))"
)


def test_lic_stream_decodes_identically_in_two_processes():
    """What the LIC guarantees across processes and thread counts: the decoded integers up to y_hat (the
    float g_s pixels may differ by a level, docs/lic.md; tests/test_lic.py covers other CPU kernels)."""
    pytest.importorskip("torch")
    from semzip.models.lic import integer_digest, load_lic

    lic = load_lic("tiny")
    y, x = np.mgrid[0:40, 0:56]
    img = np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)
    streams, shape = lic.compress(img)
    here = integer_digest(lic, streams, shape)
    arg = json.dumps({"streams": [s.hex() for s in streams], "shape": shape.to_bytes().hex()})
    got = []
    for threads in ("1", None):
        env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
        if threads:
            env["OMP_NUM_THREADS"] = threads
        r = subprocess.run([sys.executable, "-c", LIC_CHILD, arg], capture_output=True, text=True, env=env,
                           timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        got.append(json.loads(r.stdout))
    assert got == [here, here]
