"""Where commands write: no file or folder replaced without --force, inputs never overwritten, nothing written
inside the run's input folder without --force, decoded file names collision-free, names printed literally,
and every refused write (read-only, full disk, name too long) one line, exit 2, no temporary file left."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from semzip.cli import app

runner = CliRunner()


def _files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture()
def sq_archive(tmp_path):
    from semzip.api import compress_embeddings

    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    arc = tmp_path / "x.smz"
    compress_embeddings(x, arc, codec="sq", names=[f"p{i}.jpg" for i in range(6)])
    return arc


def _one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("semzip: error:"), r.output
    assert "Traceback" not in r.output
    return lines[0]


# ------------------------------------------------------------------------------------- no overwriting


def test_npy_output_is_not_replaced_without_force(tmp_path, sq_archive):
    out = tmp_path / "e.npy"
    out.write_bytes(b"precious")
    line = _one_error_line(runner.invoke(app, ["decompress", str(sq_archive), "-o", str(out)]))
    assert "--force" in line and out.read_bytes() == b"precious"
    assert runner.invoke(app, ["decompress", str(sq_archive), "-o", str(out), "--force"]).exit_code == 0
    assert np.load(out).shape == (6, 8)


@pytest.fixture()
def collection(tmp_path, monkeypatch):
    """A collection compressed from a folder of images (thumbnail encoder), names with markup and one stem
    twice."""
    pytest.importorskip("torch")
    from semzip.data.scenes import write_scenes

    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    paths = write_scenes(photos, n=6, seed=1, size=(32, 24))
    paths[0].rename(photos / "car [red].png")
    paths[1].rename(photos / "photo.png")
    from PIL import Image

    Image.open(paths[2]).convert("RGB").save(photos / "photo.jpg", quality=95)
    paths[2].unlink()
    arc = tmp_path / "c.smz"
    r = runner.invoke(app, ["compress", str(photos), "-o", str(arc), "--n-atoms", "4", "--sparsity", "2"])
    assert r.exit_code == 0, r.output
    return photos, arc


def test_decoding_into_the_photos_folder_is_refused(tmp_path, collection):
    """The report: `decompress c.smz -o imgs`, imgs being the original photos, replaced them all."""
    photos, arc = collection
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    line = _one_error_line(runner.invoke(app, ["decompress", str(arc), "-o", str(photos)]))
    assert "--force" in line
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    # a non-empty folder is refused too, and a folder holding the archive
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    _one_error_line(runner.invoke(app, ["decompress", str(arc), "-o", str(other)]))
    assert _files(other) == {"keep.txt"}
    _one_error_line(runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path)]))
    # with --force, into the non-empty folder: what was there stays
    assert runner.invoke(app, ["decompress", str(arc), "-o", str(other), "--force"]).exit_code == 0
    assert (other / "keep.txt").read_text() == "mine" and len(_files(other)) > 1


def test_compressing_into_the_input_folder_needs_force(tmp_path, collection):
    photos, _ = collection
    before = _files(photos)
    line = _one_error_line(runner.invoke(app, ["compress", str(photos), "-o", str(photos / "c.smz")]))
    assert "--force" in line and _files(photos) == before


def test_same_stem_names_decode_to_distinct_files_and_print_literally(tmp_path, collection):
    photos, arc = collection
    out = tmp_path / "decoded"
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(out)])
    assert r.exit_code == 0, r.output
    files = _files(out) - {"contact_sheet.png", "generation.json"}
    assert len(files) == 6  # 6 items, 6 files: photo.jpg and photo.png do not collide
    assert {"photo.jpg.png", "photo.png.png", "car [red].png"} <= files
    assert "wrote 6 images" in r.output
    # search lists the name as it is (no console markup: '[red]' is not a colour)
    r = runner.invoke(app, ["search", str(arc), str(photos / "car [red].png"), "--top", "6"])
    assert r.exit_code == 0, r.output
    assert "car [red].png" in r.output


def test_output_file_names_are_distinct_and_stable():
    from semzip.format.names import output_files

    names = ["photo.jpg", "photo.png", "Photo.JPG", "a/b.png", "a__b.png", "a\\b.jpg", "contact_sheet.jpg",
             "x" * 250 + ".jpg", "x" * 250 + ".png", "car [red].png", "item"]
    files = output_files(names)
    assert len({f.casefold() for f in files}) == len(names)
    assert all(len(f.encode()) <= 255 and "/" not in f and "\\" not in f for f in files)
    assert "contact_sheet.png" not in files and files[-2:] == ["car [red].png", "item.png"]
    assert output_files(names) == files  # the same archive always maps to the same files


@pytest.mark.parametrize("bad", ["", ".", "..", "a\x00b", "a\nb", "\x1b[2J", "../up", "/abs", "a//b", "n" * 256,
                                 "a\x85b"])
def test_hostile_item_names_are_refused(bad):
    from semzip.format.names import name_problem

    assert name_problem(bad)


# ------------------------------------------------------------------------------------- add


def _crafted():
    import importlib.util
    import sys
    from pathlib import Path

    if "semzip_bench_crafted" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "crafted.py"
        spec = importlib.util.spec_from_file_location("semzip_bench_crafted", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return sys.modules["semzip_bench_crafted"]


def test_add_refuses_archives_it_cannot_fully_decode_or_rewrite(tmp_path):
    pytest.importorskip("torch")
    from semzip.api import compress_embeddings

    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    arc = tmp_path / "c.smz"
    compress_embeddings(x, arc, codec="collection", n_atoms=4, sparsity=2, max_epochs=1)
    np.save(tmp_path / "new.npy", x[:2])
    data = arc.read_bytes()
    crafted = _crafted()
    future = tmp_path / "future.smz"  # a later minor version may hold what this semzip cannot carry over
    parts = crafted.split(data)
    parts.version = (1, 9)
    future.write_bytes(crafted.join(parts))
    assert runner.invoke(app, ["verify", str(future), "--deep"]).exit_code == 0  # it reads fine
    line = _one_error_line(runner.invoke(app, ["add", str(future), "--embeddings", str(tmp_path / "new.npy")]))
    assert "1.9" in line and future.read_bytes() == crafted.join(parts)
    # an archive whose dictionary contradicts its header: refused before anything is coded or written
    parts = crafted.split(data)
    parts.meta["params"]["atom_step"] /= 2
    broken = tmp_path / "broken.smz"
    broken.write_bytes(crafted.join(parts))
    _one_error_line(runner.invoke(app, ["add", str(broken), "--embeddings", str(tmp_path / "new.npy")]))
    assert broken.read_bytes() == crafted.join(parts)
    # the valid one grows and keeps its version
    assert runner.invoke(app, ["add", str(arc), "--embeddings", str(tmp_path / "new.npy")]).exit_code == 0
    assert arc.read_bytes()[4:6] == data[4:6] and runner.invoke(app, ["verify", str(arc), "--deep"]).exit_code == 0


# ------------------------------------------------------------------------------------- file-system faults


def _no_temporaries(folder) -> None:
    left = [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert not left, left


def test_name_too_long_is_one_line(tmp_path, sq_archive):
    out = tmp_path / ("n" * 300 + ".npy")
    line = _one_error_line(runner.invoke(app, ["decompress", str(sq_archive), "-o", str(out)]))
    assert "too long" in line
    _no_temporaries(tmp_path)
    emb = tmp_path / "e.npy"
    np.save(emb, np.ones((3, 4), np.float32))
    line = _one_error_line(runner.invoke(app, ["compress", str(emb), "-o", str(tmp_path / ("a" * 300 + ".smz"))]))
    assert "too long" in line
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.ENOSPC, "no space left"),
                                         (errno.EACCES, "permission denied"), (errno.EDQUOT, "quota")])
def test_refused_writes_are_one_line_and_leave_nothing(tmp_path, sq_archive, monkeypatch, code, words):
    """Root ignores a read-only folder's mode bits, so the file system's answer is simulated where the bytes
    are made durable (the last step before the rename): the temporary file exists at that point."""
    from semzip.format import container

    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(container.os, "fsync", refuse)
    emb = tmp_path / "e.npy"
    np.save(emb, np.ones((3, 4), np.float32))
    before = _files(tmp_path)
    for args in (["decompress", str(sq_archive), "-o", str(tmp_path / "out.npy")],
                 ["compress", str(emb), "-o", str(tmp_path / "new.smz"), "--codec", "sq"]):
        assert words in _one_error_line(runner.invoke(app, args))
        assert _files(tmp_path) == before
        _no_temporaries(tmp_path)


def test_folder_output_failing_midway_leaves_no_folder(tmp_path, collection, monkeypatch):
    _, arc = collection
    from semzip.format import container

    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(container.os, "fsync", fsync)
    out = tmp_path / "decoded"
    line = _one_error_line(runner.invoke(app, ["decompress", str(arc), "-o", str(out)]))
    assert "no space left" in line and str(out) in line
    assert not out.exists()
    _no_temporaries(tmp_path)


def test_unwritable_embedding_cache_costs_time_not_the_run(tmp_path, monkeypatch, caplog):
    pytest.importorskip("torch")
    import semzip.format as fmt
    from semzip.data.scenes import write_scenes

    real = fmt.atomic_file

    def read_only_cache(path):
        if path.suffix == ".npz":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path)

    monkeypatch.setattr(fmt, "atomic_file", read_only_cache)
    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    write_scenes(tmp_path / "imgs", n=4, seed=1, size=(32, 24))
    r = runner.invoke(app, ["compress", str(tmp_path / "imgs"), "-o", str(tmp_path / "c.smz"), "--n-atoms", "2",
                            "--sparsity", "1"])
    assert r.exit_code == 0, r.output
    assert "embeddings not cached" in caplog.text and "read-only" in caplog.text
    _no_temporaries(tmp_path)


def test_eval_does_not_write_into_the_dataset_folder_without_force(tmp_path):
    from semzip.cli.eval import app as eval_app

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"not read: refused before any work")
    for out, words in ((photos / "report", "--force"), (tmp_path, "--force"), (photos, "the input")):
        r = CliRunner().invoke(eval_app, ["--dataset", str(photos), "--out", str(out), "--codecs", "jpeg"])
        assert words in _one_error_line(r)
    assert _files(photos) == {"a.png"}
