"""Semantic arithmetic: blending concepts moves an embedding towards them; atom probes need a text tower."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from semzip.errors import InvalidInputError
from semzip.query.semantics import blend, nearest_concepts

runner = CliRunner()


def test_blend_moves_towards_added_and_away_from_removed():
    rng = np.random.default_rng(0)
    e, c = rng.standard_normal((2, 32)).astype(np.float32)
    e /= np.linalg.norm(e)
    c /= np.linalg.norm(c)
    plus, minus = blend(e, [(c, 0.5)]), blend(e, [(c, -0.5)])
    assert plus @ c > e @ c > minus @ c
    assert np.linalg.norm(plus) == pytest.approx(1, abs=1e-6)
    with pytest.raises(InvalidInputError):
        blend(e, [(np.ones(3), 1.0)])


def test_nearest_concepts_finds_the_matching_word():
    vocab = ["sea", "tree", "city"]
    emb = np.eye(3, 8, dtype=np.float32)
    atoms = np.array([[0, 1, 0.1, 0, 0, 0, 0, 0]], np.float32)
    assert nearest_concepts(atoms, emb, vocab, 2)[0][0][0] == "tree"


def test_blend_cli_with_image_concept_and_text_refused(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from semzip.cli import app
    from semzip.data.scenes import write_scenes

    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    paths = write_scenes(tmp_path / "imgs", n=20, size=(48, 32))
    arc = tmp_path / "x.smz"
    assert runner.invoke(app, ["compress", str(tmp_path / "imgs"), "-o", str(arc), "--n-atoms", "8"]).exit_code == 0
    night = str(paths[4])  # night_0004.png
    r = runner.invoke(app, ["blend", str(arc), "--item", "beach_0000.png", "--add", night, "--weight", "1.0",
                            "-o", str(tmp_path / "b.npy")])
    assert r.exit_code == 0, r.output
    from semzip.api import decompress, embed_concepts

    before = decompress(arc, items=["beach_0000.png"])[0]
    c = embed_concepts(arc, [night])[0]
    assert np.load(tmp_path / "b.npy")[0] @ c > before @ c
    r = runner.invoke(app, ["blend", str(arc), "--item", "beach_0000.png", "--add", "a red car", "-o", str(tmp_path / "c.png")])
    assert r.exit_code == 2 and "text tower" in r.output
    # text queries are refused offline in one line that names the weights and the flags that give them (issue 14)
    (tmp_path / "words.txt").write_text("sea\nsnow\n")
    for args in (["search", str(arc), "a red car"], ["atoms", str(arc), "--vocab", str(tmp_path / "words.txt")],
                 ["blend", str(arc), "--item", "beach_0000.png", "--add", night, "--remove", "sun", "-o",
                  str(tmp_path / "d.png")]):
        r = runner.invoke(app, args, terminal_width=400)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        for words in ("CLIP weights", "'thumbnail' encoder", "--encoder open_clip:MODEL/TAG", "--encoder hf:PATH",
                      "--models DIR"):
            assert words in r.output, (args[0], words)
        assert ("an image file works as a query" in r.output) == (args[0] != "atoms")
    assert not (tmp_path / "d.png").exists()
    r = runner.invoke(app, ["blend", str(arc), "--item", "beach_0000.png", "--add", night, "-o", str(tmp_path / "c.png")])
    assert r.exit_code == 0 and (tmp_path / "c.png").stat().st_size > 0


def test_atoms_cli_with_a_tiny_clip(tmp_path, monkeypatch):
    """The whole CLIP path on a tiny random CLIPModel: folder -> archive -> atom-to-concept table, text blend."""
    pytest.importorskip("transformers")
    from semzip.cli import app
    from semzip.data.scenes import write_scenes
    from semzip.models.tiny import save_tiny_clip

    monkeypatch.setenv("SEMZIP_CACHE", str(tmp_path / "cache"))
    clip = save_tiny_clip(tmp_path / "tiny-clip", seed=0)
    write_scenes(tmp_path / "imgs", n=30, size=(48, 32))
    arc = tmp_path / "x.smz"
    from semzip.models import encoders

    asked: list = []  # --device reaches the CLIP encoder (issue 14)
    real = encoders.resolve_device
    monkeypatch.setattr(encoders, "resolve_device", lambda d: asked.append(d) or real(d))
    r = runner.invoke(app, ["compress", str(tmp_path / "imgs"), "-o", str(arc), "--encoder", f"hf:{clip}",
                            "--n-atoms", "8", "--sparsity", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert asked == ["cpu"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nab\nb\n")
    # the archive records the encoder as "hf:tiny-clip" (a name, no path): decode time says where it lives
    r = runner.invoke(app, ["atoms", str(arc), "--vocab", str(vocab), "--top", "2"])
    assert r.exit_code == 2 and "--models" in r.output
    r = runner.invoke(app, ["--models", str(tmp_path), "atoms", str(arc), "--vocab", str(vocab), "--top", "2",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert asked[-1] == "cpu"
    assert r.output.count("(") >= 16  # 8 atoms x 2 concepts with cosines
    r = runner.invoke(app, ["--models", str(tmp_path), "blend", str(arc), "--item", "city_0002.png", "--add", "ab",
                            "-o", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    # no offline generator renders a CLIP space: asking for an image says what to do
    r = runner.invoke(app, ["--models", str(tmp_path), "blend", str(arc), "--item", "city_0002.png", "--add", "ab",
                            "-o", str(tmp_path / "e.png")])
    assert r.exit_code == 2 and "--generator" in r.output
