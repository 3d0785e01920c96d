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


def _sheet_cells(sheet: np.ndarray) -> int:
    """Width of one cell of a 6-column sheet (cells: box + 4 px padding, plus 4 px at the left)."""
    return (sheet.shape[1] - 4) // 6


def test_decompress_with_originals_writes_a_side_by_side_sheet_in_order(tmp_path, folders):
    """--originals: originals_vs_decoded.png pairs each original with its decode, in the archive's order, and the
    decoded contact sheet shows the 256x256 renders at the originals' 3:2 aspect ratio (issue 14)."""
    from semzip.api import decompress as decode_embeddings
    from semzip.data.images import comparison_sheet, contact_sheet, load_image
    from semzip.format import Container

    first, _ = folders
    arc, out = tmp_path / "x.smz", tmp_path / "dec"
    assert runner.invoke(app, ["compress", str(first), "-o", str(arc), "--n-atoms", "8"]).exit_code == 0
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(out), "--originals", str(first)])
    assert r.exit_code == 0, r.output
    assert "originals_vs_decoded.png" in r.output
    with Container.open(arc) as c:
        names = list(c.names)
    decoded = [load_image(out / n) for n in names]
    assert decoded[0].shape == (256, 256, 3) and len(decode_embeddings(arc)) == len(names)
    expected = comparison_sheet([load_image(first / n) for n in names], decoded, names)
    assert np.array_equal(load_image(out / "originals_vs_decoded.png"), expected)
    sheet = load_image(out / "contact_sheet.png")
    assert np.array_equal(sheet, contact_sheet(decoded, names, aspects=[1.5] * len(names)))
    rows = (len(names) + 5) // 6
    assert sheet.shape[0] == rows * (85 + 14 + 4) + 4  # 128x85 cells: 3:2, not square
    # without originals the square renders keep their own (square) shape
    plain = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "plain")])
    assert plain.exit_code == 0 and not (tmp_path / "plain" / "originals_vs_decoded.png").exists()
    # a folder of symlinks to the photos (as datasets are often laid out) is read like the photos themselves
    links = tmp_path / "links"
    links.mkdir()
    for n in names:
        (links / n).symlink_to((first / n).resolve())
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "linked"), "--originals", str(links)])
    assert r.exit_code == 0, r.output
    assert np.array_equal(load_image(tmp_path / "linked" / "originals_vs_decoded.png"), expected)
    # a folder holding none of the items is refused before any decoding
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "none"), "--originals", str(tmp_path)])
    assert r.exit_code == 2 and "--originals" in r.output and not (tmp_path / "none").exists()


def test_demo_sheets_are_in_the_same_order(tmp_path):
    from semzip.data.images import contact_sheet, load_image
    from semzip.format import Container

    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "d"), "-n", "12"])
    assert r.exit_code == 0, r.output
    d = tmp_path / "d"
    with Container.open(d / "collection.smz") as c:
        names = list(c.names)
    assert names != sorted(names, key=lambda n: int(n.split("_")[1][:4]))  # file order is not generation order
    originals = load_image(d / "originals.png")
    assert np.array_equal(originals, contact_sheet([load_image(d / "images" / n) for n in names], names))
    decoded = [load_image(d / "decoded" / n) for n in names]
    assert np.array_equal(load_image(d / "decoded" / "contact_sheet.png"),
                          contact_sheet(decoded, names, aspects=[1.5] * len(names)))
    assert originals.shape == load_image(d / "decoded" / "contact_sheet.png").shape
    assert (d / "decoded" / "originals_vs_decoded.png").is_file()


def test_quality_is_one_rate_knob(tmp_path, folders):
    """-q/--quality sets each codec's natural rate option (collection: atoms per item; image-text: LIC downscale;
    sq: bits): the same archive as that option, refused together with it or outside the ladder (issue 14)."""
    from semzip.cli.collection import rate_settings

    assert rate_settings("collection", None, None, None, None) == (4, 0.25, 8)  # the defaults, unchanged
    assert rate_settings("collection", 2, None, None, None)[0] == 2
    assert rate_settings("image-text", 3, None, None, None)[1] == 0.5
    assert rate_settings("sq", 5, None, None, None)[2] == 5
    first, _ = folders
    a, b = tmp_path / "q.smz", tmp_path / "s.smz"
    assert runner.invoke(app, ["compress", str(first), "-o", str(a), "-q", "2", "--n-atoms", "8"]).exit_code == 0
    assert runner.invoke(app, ["compress", str(first), "-o", str(b), "--sparsity", "2", "--n-atoms", "8"]).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    for args, why in ((["-q", "2", "--sparsity", "3"], "give one or the other"),
                      (["-q", "17"], "takes 1-16"),
                      (["-q", "5", "--codec", "image-text"], "takes 1-4")):
        r = runner.invoke(app, ["compress", str(first), "-o", str(tmp_path / "x.smz"), *args])
        assert r.exit_code == 2 and why in r.output and not (tmp_path / "x.smz").exists(), r.output
