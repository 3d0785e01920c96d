"""Pinned archives: any change to the container or entropy layers' bytes must be deliberate.

Two kinds of pin:

* ``GOLDEN_SHA256``: the bytes the current sq encoder writes for a fixed input. An intended change of the
  written bytes bumps ``FORMAT_MAJOR``/``FORMAT_MINOR`` (semzip.format) and updates this digest.
* ``tests/data/golden/``: small archives stored as files, one set per format version, with the SHA-256 of
  what they must decode to (integer codes and float32 embedding bytes) in ``manifest.json``. Old goldens are
  kept when the version changes: every archive this semzip ever wrote must keep decoding identically.
  ``python tests/test_golden.py --write`` adds the set for the current version (never overwrites one).

The goldens of the caption codec (``.smzc``) and of image-text archives are in ``tests/data/golden/portable/``:
decoding them needs the SmolLM2 caption model, so ``tests/test_portable.py`` decodes them (and these sq and
collection files) under several CPU kernels and thread counts against ``portable/manifest.json``. Here every
file of the golden tree is checked to be pinned by one of the manifests, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from semzip.codecs.embeddings import ScalarQuantCodec
from semzip.format import FORMAT_MAJOR, FORMAT_MINOR, Container, pack

GOLDEN_SHA256 = "782cc66e08200ce6766217be99869e2ec13b4e4cde166b6117995ba0c4607423"  # format 1.1 (1.0: b07f03e3...)
GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
VERSION = f"v{FORMAT_MAJOR}.{FORMAT_MINOR}"


def _golden_bytes() -> bytes:
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((10, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    enc = ScalarQuantCodec(bits=6, block_size=4).compress(x, names=[f"img{i}" for i in range(10)])
    enc.header.writer = "golden"
    return pack(enc.header, enc.blobs, enc.blocks, enc.names)


def _golden_collection_bytes() -> bytes:
    from semzip.codecs.collection import CollectionCodec

    x = np.random.default_rng(1234).standard_normal((24, 16)).astype(np.float32)
    enc = CollectionCodec(n_atoms=8, sparsity=2, max_epochs=3, block_size=8).compress(
        x, names=[f"img{i}" for i in range(24)]
    )
    enc.header.writer = "golden"
    return pack(enc.header, enc.blobs, enc.blocks, enc.names)


def decoded_digests(data: bytes) -> dict[str, str]:
    """SHA-256 of an archive's integer codes and of its decoded float32 embeddings, as pinned in the manifest."""
    from semzip.archive.digest import embeddings_digest
    from semzip.codecs.base import get_codec

    c = Container.from_bytes(data)
    got = embeddings_digest(c, get_codec(c.header.codec).from_header(c.header))
    return {k: got[k] for k in ("codes_sha256", "embeddings_sha256", "shape")}


def _manifest() -> dict:
    return json.loads((GOLDEN_DIR / "manifest.json").read_text())


def test_golden_archive_bytes_are_pinned():
    data = _golden_bytes()
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256, (
        "the sq encoder now writes other bytes: if intended, bump FORMAT_MAJOR/MINOR, update GOLDEN_SHA256 and "
        "add a golden set for the new version (python tests/test_golden.py --write)"
    )


def test_golden_archive_decodes_twice_identically():
    data = _golden_bytes()
    a = ScalarQuantCodec.from_header(Container.from_bytes(data).header).decompress(Container.from_bytes(data))
    b = ScalarQuantCodec.from_header(Container.from_bytes(data).header).decompress(Container.from_bytes(data))
    assert a.tobytes() == b.tobytes()


def test_current_format_version_has_a_golden_set():
    assert VERSION in _manifest(), f"no golden archives for format {VERSION}: run python tests/test_golden.py --write"
    stored = (GOLDEN_DIR / f"{VERSION}-sq.smz").read_bytes()
    assert stored == _golden_bytes(), "the sq encoder no longer writes the stored golden archive's bytes"


def _entries() -> list[tuple[str, str]]:
    path = GOLDEN_DIR / "manifest.json"
    return [(v, k) for v, files in json.loads(path.read_text()).items() for k in files] if path.is_file() else []


@pytest.mark.parametrize("version, kind", _entries())
def test_stored_golden_archives_decode_to_pinned_values(version, kind):
    data = (GOLDEN_DIR / f"{version}-{kind}.smz").read_bytes()
    want = _manifest()[version][kind]
    assert hashlib.sha256(data).hexdigest() == want["file_sha256"]
    c = Container.from_bytes(data)
    assert f"v{c.format_version[0]}.{c.format_version[1]}" == version
    assert all(ok for _, ok, _ in c.verify())
    got = decoded_digests(data)
    assert got == {k: want[k] for k in got}, f"{version}-{kind}.smz decodes differently than when it was pinned"


def test_every_golden_file_is_pinned():
    """Each file under tests/data/golden/ has its SHA-256 in a manifest (the sq and collection sets here, the
    caption, image-text and adapter files in portable/), so none can change or sit there unchecked."""
    pinned = {f"{v}-{k}.smz": want["file_sha256"] for v, kinds in _manifest().items() for k, want in kinds.items()}
    for manifest in sorted(GOLDEN_DIR.glob("portable/**/manifest.json")):
        folder = manifest.parent.relative_to(GOLDEN_DIR)
        files = json.loads(manifest.read_text())["_files"]
        pinned.update({(folder / name).as_posix(): sha for name, sha in files.items()})
    files = {p.relative_to(GOLDEN_DIR).as_posix(): p for p in GOLDEN_DIR.rglob("*") if p.is_file()
             and p.name != "manifest.json"}
    assert sorted(files) == sorted(pinned)
    assert {".smz", ".smzc", ".adapter"} <= {Path(n).suffix for n in files}
    for name, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == pinned[name], f"{name} is not the pinned file"


def _write() -> None:  # pragma: no cover - run by hand after a deliberate format change
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    path = GOLDEN_DIR / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    if VERSION in manifest:
        sys.exit(f"a golden set for {VERSION} exists; bump the format version instead of overwriting it")
    manifest[VERSION] = {}
    for kind, data in (("sq", _golden_bytes()), ("collection", _golden_collection_bytes())):
        (GOLDEN_DIR / f"{VERSION}-{kind}.smz").write_bytes(data)
        manifest[VERSION][kind] = {"file_sha256": hashlib.sha256(data).hexdigest(), **decoded_digests(data)}
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote golden archives for {VERSION} to {GOLDEN_DIR}")


if __name__ == "__main__":  # pragma: no cover
    if "--write" in sys.argv:
        _write()
