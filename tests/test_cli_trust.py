"""Trust in what the CLI writes and says: output permissions follow the umask, a forced decode into a used
folder says what it kept, the demo's byte counts are the ones `semzip info` shows, and bad decoder settings
are refused before any decoding."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from semzip.cli import app
from semzip.data.scenes import write_scenes

runner = CliRunner()


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from semzip.api import compress_folder

    d = tmp_path_factory.mktemp("trust")
    write_scenes(d / "imgs", n=12, seed=3, size=(48, 32))
    compress_folder(d / "imgs", d / "c.smz", encoder="thumbnail", use_cache=False, n_atoms=8, sparsity=2)
    return d


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_decoded_files_sheets_and_blends_follow_the_umask(collection, tmp_path, mask):
    arc = collection / "c.smz"
    with umask(mask):
        r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "dec")])
        assert r.exit_code == 0, r.output
        concept = str(collection / "imgs" / "forest_0001.png")
        r = runner.invoke(app, ["blend", str(arc), "--item", "beach_0000.png", "--add", concept,
                                "-o", str(tmp_path / "b.png")])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "e.npy")])
        assert r.exit_code == 0, r.output
    assert _mode(tmp_path / "dec") == 0o777 & ~mask  # the folder is built as a temporary one, then renamed
    files = list((tmp_path / "dec").iterdir())
    assert {f.name for f in files} >= {"contact_sheet.png", "generation.json", "beach_0000.png"}
    for f in [*files, tmp_path / "b.png", tmp_path / "e.npy"]:
        assert _mode(f) == 0o666 & ~mask, f.name


def test_decoding_into_a_used_folder(collection, tmp_path):
    arc, out = collection / "c.smz", tmp_path / "out"
    out.mkdir()
    (out / "old_photo.png").write_bytes(b"not from this archive")
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(out)])
    assert r.exit_code == 2 and "not empty" in r.output and "--force" in r.output
    assert [p.name for p in out.iterdir()] == ["old_photo.png"]
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert "1 older file(s)" in r.output and "old_photo.png" in r.output  # said, not silently mixed in
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(out), "--force", "--item", "beach_0000.png"])
    assert r.exit_code == 0, r.output
    assert "older file(s)" in r.output  # the other decoded items are now older files too
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "fresh")])
    assert r.exit_code == 0 and "older file" not in r.output


def test_bad_decoder_settings_are_refused_before_any_decoding(collection, tmp_path, monkeypatch):
    from semzip.archive import Archive

    def no_decoding(*a, **k):
        raise AssertionError("decoded before the settings were checked")

    monkeypatch.setattr(Archive, "embeddings", no_decoding)
    arc = collection / "c.smz"
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "o"), "--generator",
                            "stable-unclip:/nonexistent/sd21-unclip"])
    assert r.exit_code == 2 and "sd21-unclip" in r.output, r.output
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "o"), "--size", "64x0"])
    assert r.exit_code == 2, r.output
    for flag, value in (("--refiner", "sd-img2img:/nonexistent"), ("--strength", "0.5")):
        r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "o"), flag, value])
        assert r.exit_code == 2 and f"{flag} does not apply to collection archives" in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_demo_reports_the_bytes_info_shows(tmp_path):
    r = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d"), "-n", "20"])
    assert r.exit_code == 0, r.output
    m = re.search(r"per-item codes \(items\) (\d+) B = ([\d.]+) bits per image, block index (\d+) B", r.output)
    assert m, r.output
    info = runner.invoke(app, ["info", str(tmp_path / "d" / "collection.smz"), "--json"])
    sections = {s["name"]: s["bytes"] for s in json.loads(info.output)["sections"]}
    assert int(m.group(1)) == sections["items"] and int(m.group(3)) == sections["index"]
    assert float(m.group(2)) == pytest.approx(8 * sections["items"] / 20, abs=0.05)


def test_error_messages_name_cli_flags_not_python_arguments(tmp_path):
    """Messages a CLI user sees name the flag (--allow-download, --lpips-backbone, --n-atoms), not the Python
    keyword argument behind it."""
    import ast
    from pathlib import Path

    import numpy as np

    import semzip

    python_only = re.compile(r"allow_download=True|backbone=PATH|n_atoms=\{")
    found = []
    for path in Path(semzip.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        found += [f"{path.name}:{n.lineno}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
                  and python_only.search(n.value)]
    assert not found, found
    np.save(tmp_path / "e.npy", np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32))
    r = runner.invoke(app, ["compress", "--embeddings", str(tmp_path / "e.npy"), "-o", str(tmp_path / "a.smz"),
                            "--n-atoms", "40"])
    assert r.exit_code == 2 and "--n-atoms 40 exceeds the 20 items" in r.output, r.output


def test_bits_per_pixel_from_embeddings_says_what_it_assumes(tmp_path):
    import numpy as np

    np.save(tmp_path / "e.npy", np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32))
    base = ["compress", "--embeddings", str(tmp_path / "e.npy"), "-o", str(tmp_path / "a.smz"), "--n-atoms", "4",
            "-f"]
    r = runner.invoke(app, base)
    assert r.exit_code == 0 and "assuming 768x512-pixel images" in r.output and "--pixels" in r.output, r.output
    r = runner.invoke(app, [*base, "--pixels", "1024x768"])
    assert r.exit_code == 0 and "assuming" not in r.output, r.output
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "a.smz"), "--json"]).output)
    assert info["params"]["pixels_per_item"] == 1024 * 768
    assert info["bits_per_pixel"] == pytest.approx(info["bits_per_item"] / (1024 * 768))
    for bad in ("0x5", "many"):
        r = runner.invoke(app, [*base, "--pixels", bad])
        assert r.exit_code == 2 and "--pixels must look like" in r.output, r.output
    r = runner.invoke(app, [*base, "--codec", "sq", "--pixels", "100"])
    assert r.exit_code == 2 and "--pixels is for --codec collection" in r.output
