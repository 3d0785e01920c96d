"""CompressAI backend against the real library: every zoo image architecture by name and quality (random
weights of the real architecture placed where the zoo would have downloaded them), checkpoints, stored
entropy tables, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import textured_image

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from semzip.errors import InvalidInputError, MissingModelError, ModelMismatchError
from semzip.models.lic import COMPRESSAI_ARCHS, COMPRESSAI_QUALITIES, CompressAILIC, load_lic
from semzip.models.tiny import random_compressai_net


def _zoo_file(torch_home: Path, arch: str, quality: int, metric: str = "mse") -> Path:
    from compressai.zoo.image import model_urls

    ckpt_dir = torch_home / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return ckpt_dir / model_urls[arch][metric][quality].rsplit("/", 1)[-1]


def test_the_accepted_architectures_are_the_zoo_image_models():
    from compressai.zoo.image import cfgs, model_urls

    assert "cheng2020-attn" in COMPRESSAI_ARCHS
    assert set(COMPRESSAI_ARCHS) == set(model_urls)  # every image architecture with zoo weights
    for arch, top in COMPRESSAI_QUALITIES.items():
        assert sorted(model_urls[arch]["mse"]) == list(range(1, top + 1)) == sorted(cfgs[arch])


@pytest.mark.parametrize("arch", COMPRESSAI_ARCHS)
def test_every_zoo_architecture_by_name_and_quality(arch, tmp_path, monkeypatch):
    """``compressai:<arch>:<q>`` through the zoo's own loader (cache hit, no download), bit-exact against
    CompressAI's own decode of the same strings."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = random_compressai_net(arch, 1)
    torch.save(net.state_dict(), _zoo_file(tmp_path, arch, 1))
    codec = load_lic(f"compressai:{arch}:1")
    assert codec.name == f"compressai:{arch}:1" and codec.tables == "stored"
    img = textured_image(48, 80, seed=1, noise=20)
    streams, shape = codec.compress(img)
    out = codec.decompress(streams, shape.to_bytes())
    assert out.shape == img.shape
    # the same strings through CompressAI directly
    x = torch.from_numpy(np.pad(img, ((0, 16), (0, 48), (0, 0)), mode="edge")).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = net.compress(x)
        assert [s[0] for s in ref["strings"]] == streams
        x_hat = net.decompress(ref["strings"], ref["shape"])["x_hat"]
    ref_img = x_hat[0].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy().astype(np.uint8)[:48, :80]
    assert np.array_equal(out, ref_img)


def test_zoo_quality_range_and_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InvalidInputError, match="1..6"):
        CompressAILIC("cheng2020-attn", quality=7)
    with pytest.raises(InvalidInputError, match="1..8"):
        load_lic("compressai:mbt2018:0")
    with pytest.raises(InvalidInputError, match="unknown CompressAI architecture"):
        load_lic("compressai:ssf2020:1")
    with pytest.raises(InvalidInputError, match="metric"):
        CompressAILIC("mbt2018", 1, metric="psnr")
    with pytest.raises(MissingModelError, match="--allow-download"):
        load_lic("compressai:cheng2020-attn:6")  # not cached: nothing is downloaded unless asked


def test_checkpoint_forms_and_computed_tables(tmp_path):
    net = random_compressai_net("mbt2018-mean", 1, seed=3)
    plain = {k: v for k, v in net.state_dict().items() if "_quantized_cdf" not in k and "_offset" not in k
             and "_cdf_length" not in k}
    torch.save({"state_dict": plain}, tmp_path / "train.pth.tar")  # a training checkpoint without tables
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    a = CompressAILIC("mbt2018-mean", checkpoint=tmp_path / "train.pth.tar")
    b = load_lic(f"compressai:mbt2018-mean:{tmp_path / 'w.safetensors'}")
    assert a.tables == "computed" and b.tables == "stored"
    img = textured_image(64, 64, seed=2, noise=20)
    for codec in (a, b):
        streams, shape = codec.compress(img)
        assert codec.decompress(streams, shape).shape == img.shape


def test_stored_cdf_tables_are_used_not_recomputed(tmp_path):
    """The integer tables in a file are the tables coded with, even when the float parameters would give
    others (they can differ between machines: that is why they are stored)."""
    net = random_compressai_net("bmshj2018-hyperprior", 1, seed=5)
    state = net.state_dict()
    stored = {k: v.clone() for k, v in state.items() if k.endswith(("_quantized_cdf", "_offset", "_cdf_length"))}
    assert stored
    # nudge the float density parameters: a recomputation would now give different integer tables
    for k in list(state):
        if "entropy_bottleneck._matrix" in k or "entropy_bottleneck.quantiles" in k:
            state[k] = state[k] + 0.25
    torch.save(state, tmp_path / "nudged.pth")
    codec = CompressAILIC("bmshj2018-hyperprior", checkpoint=tmp_path / "nudged.pth")
    got = codec.net.state_dict()
    for k, v in stored.items():
        assert torch.equal(got[k], v), k
    recomputed = CompressAILIC("bmshj2018-hyperprior", checkpoint=tmp_path / "nudged.pth")
    recomputed.net.update(force=True)
    assert any(not torch.equal(recomputed.net.state_dict()[k], v) for k, v in stored.items())
    assert codec.tables == "stored"
    streams, shape = codec.compress(textured_image(64, 64, noise=20))
    assert codec.decompress(streams, shape).shape == (64, 64, 3)


def test_wrong_architecture_checkpoint_is_named_as_such(tmp_path):
    torch.save(random_compressai_net("bmshj2018-factorized", 1).state_dict(), tmp_path / "fact.pth")
    with pytest.raises(ModelMismatchError, match="not a cheng2020-attn checkpoint"):
        CompressAILIC("cheng2020-attn", checkpoint=tmp_path / "fact.pth")
    with pytest.raises(MissingModelError, match="not found"):
        CompressAILIC("mbt2018", checkpoint=tmp_path / "absent.pth")


def test_stream_from_another_model_is_refused(tmp_path):
    torch.save(random_compressai_net("mbt2018-mean", 1, seed=1).state_dict(), tmp_path / "a.pth")
    torch.save(random_compressai_net("mbt2018-mean", 1, seed=2).state_dict(), tmp_path / "b.pth")
    a = CompressAILIC("mbt2018-mean", checkpoint=tmp_path / "a.pth")
    b = CompressAILIC("mbt2018-mean", checkpoint=tmp_path / "b.pth")
    streams, shape = a.compress(textured_image(64, 64, noise=20))
    with pytest.raises(ModelMismatchError):
        b.decompress(streams, shape)
