"""`semzip compress/add/decompress` on image folders with the offline thumbnail encoder."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from semzip.cli import app
from semzip.data.scenes import write_scenes

runner = CliRunner()


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    first, more = tmp_path / "imgs", tmp_path / "more"
    write_scenes(first, n=40, seed=1, size=(48, 32))
    for p in write_scenes(more, n=10, seed=2, size=(48, 32)):
        p.rename(p.with_name("new_" + p.name))
    (first / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (first / "notes.txt").write_text("not an image")
    return first, more


def test_folder_round_trip_add_and_images(tmp_path, folders):
    first, more = folders
    arc = tmp_path / "x.smz"
    r = runner.invoke(app, ["compress", str(first), "-o", str(arc), "--n-atoms", "8", "--sparsity", "2"])
    assert r.exit_code == 0, r.output
    # bad files are reported by name and skipped, never silently dropped
    assert "broken.png" in r.output and "notes.txt" in r.output and "skipped 2" in r.output
    r = runner.invoke(app, ["info", str(arc)])
    assert r.exit_code == 0 and "collection" in r.output and "bits per pixel" in r.output
    # a second run reuses the cached embeddings
    r = runner.invoke(app, ["compress", str(first), "-o", str(arc), "--n-atoms", "8", "--sparsity", "2", "-f"])
    assert "40 embeddings from cache" in r.output
    r = runner.invoke(app, ["add", str(arc), str(more)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["add", str(arc), str(more)])
    assert r.exit_code == 2 and "already in the archive" in r.output
    emb = tmp_path / "e.npy"
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(emb)])
    assert r.exit_code == 0 and np.load(emb).shape == (50, 769)
    out = tmp_path / "dec"
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(out), "--item", "beach_0005.png", "--size", "64x48"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["beach_0005.png", "contact_sheet.png", "generation.json"]


def test_strict_refuses_a_bad_folder(tmp_path, folders):
    first, _ = folders
    arc = tmp_path / "x.smz"
    r = runner.invoke(app, ["compress", str(first), "-o", str(arc), "--strict"])
    assert r.exit_code == 2 and ("broken.png" in r.output or "notes.txt" in r.output)
    assert not arc.exists()


def test_unknown_space_needs_a_generator(tmp_path):
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    arc = tmp_path / "x.smz"
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "e.npy"), "-o", str(arc), "--n-atoms", "8"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "imgs")])
    assert r.exit_code == 2 and "--generator" in r.output


def test_parquet_embeddings_with_names(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = np.random.default_rng(1).standard_normal((40, 12)).astype(np.float32)
    table = pa.table({"image_path": [f"photos/{i}.jpg" for i in range(40)], "embedding": x.tolist()})
    pq.write_table(table, tmp_path / "e.parquet")
    arc = tmp_path / "x.smz"
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "e.parquet"), "-o", str(arc), "--n-atoms", "8"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "one.npy"), "--item", "photos/7.jpg"])
    assert r.exit_code == 0, r.output
    pq.write_table(pa.table({"vec": x.tolist()}), tmp_path / "bad.parquet")
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "y.smz")])
    assert r.exit_code == 2 and "no 'embedding' column" in r.output
