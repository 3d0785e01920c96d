"""The `semzip` command: round trip, info, verify, clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from semzip.cli import app
from semzip.sparse.synthetic import make_sparse_embeddings

runner = CliRunner()


@pytest.fixture()
def emb(tmp_path):
    x = make_sparse_embeddings(n=150, d=64, n_concepts=32, k=3, seed=1)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    return x, path


def test_help_is_there():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("compress", "decompress", "add", "info", "verify", "demo"):
        assert cmd in r.output


def test_compress_info_decompress_round_trip(tmp_path, emb):
    x, src = emb
    arc, dec = tmp_path / "x.smz", tmp_path / "y.npy"
    r = runner.invoke(app, ["compress", str(src), "-o", str(arc), "--codec", "sq", "--bits", "8", "--block-size", "16"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(arc), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["n_items"] == 150 and d["codec"] == "sq" and d["bytes"] == arc.stat().st_size
    assert d["bits_per_item"] == pytest.approx(8 * arc.stat().st_size / 150)
    assert runner.invoke(app, ["info", str(arc)]).exit_code == 0
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(dec)])
    assert r.exit_code == 0, r.output
    y = np.load(dec)
    assert y.shape == x.shape
    assert np.min(np.sum(x * y, axis=1)) > 0.999
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "one.npy"), "--item", "item_00100"])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "one.npy")[0], y[100])
    assert runner.invoke(app, ["verify", str(arc)]).exit_code == 0


def test_existing_output_needs_force(tmp_path, emb):
    _, src = emb
    arc = tmp_path / "x.smz"
    assert runner.invoke(app, ["compress", str(src), "-o", str(arc)]).exit_code == 0
    r = runner.invoke(app, ["compress", str(src), "-o", str(arc)])
    assert r.exit_code == 2 and "--force" in r.output
    assert runner.invoke(app, ["compress", str(src), "-o", str(arc), "--force"]).exit_code == 0
    r = runner.invoke(app, ["compress", str(src), "-o", str(src), "--force"])
    assert r.exit_code == 2 and "input" in r.output
    assert np.load(src).shape == (150, 64)  # the input survived


@pytest.mark.parametrize(
    "content, message",
    [(b"not an archive at all", "not a semzip archive"), (b"\x89SMZ\x01", "truncated")],
)
def test_bad_archives_give_one_line_and_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.smz"
    bad.write_bytes(content)
    for cmd in (["info", str(bad)], ["decompress", str(bad), "-o", str(tmp_path / "o.npy")]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2
        assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.npy").exists()


def test_corrupted_archive_is_reported_by_verify_and_refused(tmp_path, emb):
    _, src = emb
    arc = tmp_path / "x.smz"
    runner.invoke(app, ["compress", str(src), "-o", str(arc), "--codec", "sq", "--block-size", "16"])
    data = bytearray(arc.read_bytes())
    data[-10] ^= 0x40  # inside the last item block
    arc.write_bytes(bytes(data))
    r = runner.invoke(app, ["verify", str(arc)])
    assert r.exit_code == 1 and "CORRUPT" in r.output
    r = runner.invoke(app, ["decompress", str(arc), "-o", str(tmp_path / "o.npy")])
    assert r.exit_code == 2 and "corrupted" in r.output
    assert not (tmp_path / "o.npy").exists()


def test_bad_embeddings_input(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[1.0, np.nan]]))
    r = runner.invoke(app, ["compress", str(bad), "-o", str(tmp_path / "x.smz")])
    assert r.exit_code == 2 and "NaN" in r.output
    r = runner.invoke(app, ["compress", str(tmp_path / "missing.npy"), "-o", str(tmp_path / "x.smz")])
    assert r.exit_code == 2 and "no such" in r.output
    assert not (tmp_path / "x.smz").exists()


def test_demo_runs(tmp_path):
    r = runner.invoke(app, ["demo", "--dir", str(tmp_path / "d"), "-n", "40"])
    assert r.exit_code == 0, r.output
    assert "identical to the full decode: True" in r.output
    assert (tmp_path / "d" / "collection.smz").exists()
    assert len(list((tmp_path / "d" / "decoded").glob("*.png"))) == 42  # 40 images + 2 sheets
    assert (tmp_path / "d" / "decoded" / "originals_vs_decoded.png").is_file()


def test_importing_every_module_imports_no_heavy_library():
    code = (
        "import sys, pkgutil, importlib, semzip\n"
        "for m in pkgutil.walk_packages(semzip.__path__, 'semzip.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(any(k in sys.modules for k in ('torch', 'transformers', 'diffusers', 'open_clip')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_error_messages_keep_square_brackets(monkeypatch, tmp_path):
    """Errors are printed literally: 'semzip[torch]' must not be eaten as console markup."""
    from semzip import cli
    from semzip.errors import MissingDependencyError

    def boom(*a, **k):
        raise MissingDependencyError("install it with pip install 'semzip[torch]'")

    monkeypatch.setattr("semzip.api.compress_embeddings", boom)
    np.save(tmp_path / "e.npy", np.ones((4, 3), np.float32))
    r = runner.invoke(cli.app, ["compress", "--embeddings", str(tmp_path / "e.npy"), "--codec", "sq", "-o", str(tmp_path / "x.smz")])
    assert r.exit_code == 2 and "semzip[torch]" in r.output


def test_verify_deep_decodes_what_the_crcs_cannot_judge(tmp_path, emb):
    from semzip.format import Container, write

    _, src = emb
    arc = tmp_path / "x.smz"
    runner.invoke(app, ["compress", str(src), "-o", str(arc), "--codec", "sq"])
    r = runner.invoke(app, ["verify", str(arc), "--deep"])
    assert r.exit_code == 0 and "content" in r.output and "decode" in r.output
    with Container.open(arc) as c:  # re-pack with a garbage model table: every CRC is valid again
        header, blocks, names = c.header, [(b.n_items, p) for b, p in c.iter_blocks()], c.names
        blobs = {**c.blobs(), "model": b"\xff" * 7}
    bad = tmp_path / "bad.smz"
    write(bad, header, blobs, blocks, names)
    assert runner.invoke(app, ["verify", str(bad)]).exit_code == 0
    r = runner.invoke(app, ["verify", str(bad), "--deep"])
    assert r.exit_code == 1 and "CORRUPT" in r.output
