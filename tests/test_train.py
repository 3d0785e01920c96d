"""Tests for semzip.train: TOML configs, the training loop (smoke run, resume), loss terms, the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from semzip.errors import InvalidInputError
from semzip.train.config import load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train"

SMOKE = """
name = "smoke"
steps = 3
log_every = 1
checkpoint_every = 2
threads = 1
lr = 1e-3
out_dir = "run"
[model]
N = 8
M = 8
Nh = 8
[data]
train_dir = "imgs"
crop = 64
batch_size = 2
[loss]
mse = 0.01
clip = 1.0
clip_encoder = "thumbnail:4"
"""


@pytest.fixture
def smoke(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        a = rng.integers(0, 256, size=(80 + 8 * i, 96, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / "imgs" / f"{i}.png")
    cfg = tmp_path / "smoke.toml"
    cfg.write_text(SMOKE, encoding="utf-8")
    return cfg


def test_shipped_configs_load_and_point_at_shared_data():
    for name in ("lic-tiny.toml", "lic-semantic.toml"):
        cfg = load_config(REPO / "configs" / name)
        assert cfg.path(cfg.data.train_dir) == SHARED_TRAIN.resolve()
        assert "kodak" not in str(cfg.path(cfg.data.train_dir)).lower()
    sem = load_config(REPO / "configs" / "lic-semantic.toml")
    assert sem.loss.lpips > 0 and sem.loss.dists > 0 and sem.loss.clip > 0 and sem.init


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    for text, msg in (
        ("stepz = 3", "unknown key"),
        ("[data]\ncrop = 100", "multiple of 64"),
        ("steps = 'many'", "must be int"),
        ("[loss]\nlpips = -1.0", ">= 0"),
        ("device = 'tpu'", "device"),
        ("steps = [", "invalid TOML"),
    ):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInputError, match=msg):
            load_config(bad)
    with pytest.raises(InvalidInputError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_kodak_is_refused(tmp_path):
    from semzip.train.lic import TrainingData

    (tmp_path / "kodak").mkdir()
    with pytest.raises(InvalidInputError, match="Kodak"):
        TrainingData(tmp_path / "kodak", 64, np.random.default_rng(0))
    (tmp_path / "x").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x" / "kodim01.png")
    with pytest.raises(InvalidInputError, match="Kodak"):
        TrainingData(tmp_path / "x", 64, np.random.default_rng(0))


def test_smoke_run_checkpoints_and_resumes(smoke, monkeypatch, tmp_path):
    from semzip.models.lic import TinyHyperprior
    from semzip.train.lic import train_lic

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))
    cfg = load_config(smoke)
    cfg.loss.lpips = 0.5  # no AlexNet backbone here: must be dropped, and said so
    said: list[str] = []
    res = train_lic(cfg, say=said.append, progress=False)
    ckpt = tmp_path / "run" / "checkpoint"
    assert res.step == 3 and res.checkpoint == ckpt
    for f in ("model.safetensors", "optim.safetensors", "state.json"):
        assert (ckpt / f).is_file()
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 3 and state["config"]["loss"]["mse"] == 0.01
    assert "lpips" in state["dropped_terms"] and "lpips" in res.dropped
    assert any("dropping the lpips" in m for m in said)
    assert "thumbnail-sim" in state["active_terms"]["clip"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all("clip" in r and "bpp" in r for r in log)
    model = TinyHyperprior.from_file(res.export)
    assert model.meta["steps"] == 3

    cfg2 = load_config(smoke)
    cfg2.steps = 5
    said.clear()
    res2 = train_lic(cfg2, resume=True, say=said.append, progress=False)
    assert res2.step == 5 and any("resumed" in m and "step 3" in m for m in said)
    assert json.loads((ckpt / "state.json").read_text())["step"] == 5
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]


def test_resume_without_checkpoint_is_refused(smoke):
    from semzip.train.lic import train_lic

    with pytest.raises(InvalidInputError, match="no checkpoint"):
        train_lic(load_config(smoke), resume=True, say=lambda m: None, progress=False)


def test_thumbnail_projection_matches_the_encoder():
    from semzip.models.thumbnail import ThumbnailEncoder
    from semzip.train.lic import clip_embedder

    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(2, 64, 48, 3), dtype=np.uint8)
    embed, label = clip_embedder("thumbnail", "cpu")
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    x.requires_grad_(True)
    got = embed(x)
    got.sum().backward()
    assert x.grad is not None and "not CLIP" in label
    want = ThumbnailEncoder().encode_images(list(imgs))
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-5)
    with pytest.raises(InvalidInputError):
        clip_embedder("open_clip:ViT-B-32", "cpu")


def test_cli_command(smoke, tmp_path):
    import typer
    from typer.testing import CliRunner

    from semzip.cli.train import train_lic_command

    app = typer.Typer()
    app.command(name="train-lic")(train_lic_command)
    app.command(name="noop")(lambda: None)  # two commands: typer keeps the sub-command name
    runner = CliRunner()
    r = runner.invoke(app, ["train-lic", "--config", str(smoke), "--steps", "1",
                            "--export", str(tmp_path / "w.safetensors")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "w.safetensors").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text("nope = 1", encoding="utf-8")
    r = runner.invoke(app, ["train-lic", "--config", str(bad)])
    assert r.exit_code == 2


def test_hf_clip_term_is_differentiable(tmp_path):
    pytest.importorskip("transformers")
    from semzip.models.encoders import HFClipEncoder
    from semzip.models.tiny import save_tiny_clip_vision
    from semzip.train.lic import clip_embedder

    folder = save_tiny_clip_vision(tmp_path / "tiny-clip-vision", seed=0)
    embed, label = clip_embedder(f"hf:{folder}", "cpu")
    imgs = np.random.default_rng(2).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    x = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255).requires_grad_(True)
    got = embed(x)
    got.sum().backward()
    assert x.grad is not None and label.startswith("CLIP")
    want = HFClipEncoder(folder, device="cpu").encode_images(list(imgs))  # 32 px: resize is the identity
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-4)
