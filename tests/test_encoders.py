"""Tests for the encoders: the offline thumbnail pair, a tiny random transformers CLIP, the registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import random_images, smooth_image

from semzip.errors import InvalidInputError, MissingModelError
from semzip.models.registry import known_encoders, known_generators, load_encoder, load_generator
from semzip.models.thumbnail import (
    ThumbnailDecoder,
    ThumbnailEncoder,
    thumbnail,
    thumbnail_dim,
    thumbnail_space,
)
from semzip.models.tiny import random_open_clip, save_tiny_clip


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


# ---------------------------------------------------------------------------------------------- thumbnail


def test_import_does_not_pull_torch():
    code = (
        "import sys, semzip.models, semzip.models.encoders, semzip.models.generators, semzip.data.images; "
        "print([m for m in ('torch', 'transformers', 'diffusers', 'open_clip') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_thumbnail_embedding_shape_norm_determinism():
    enc = ThumbnailEncoder()
    assert enc.dim == 769 == thumbnail_dim(16) and enc.space == "thumbnail-16x16-opponent-v1"
    imgs = [smooth_image(64, 96, seed=p) for p in (0, 1, 2)]
    v = enc.encode_images(imgs)
    assert v.shape == (3, 769) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(v, enc.encode_images(imgs, batch_size=1))
    np.testing.assert_array_equal(v, ThumbnailEncoder().encode_images(imgs))
    assert enc.fingerprint == ThumbnailEncoder().fingerprint != ThumbnailEncoder(grid=8).fingerprint


def test_thumbnail_round_trip():
    enc, dec = ThumbnailEncoder(), ThumbnailDecoder()
    assert dec.space == enc.space and dec.dim == enc.dim
    img = smooth_image(64, 96)
    v = enc.encode_images([img])
    # The thumbnail itself comes back essentially exactly (float round trip).
    assert _psnr(dec.thumbnails(v)[0], thumbnail(img)) > 100
    # At the grid size, the uint8 output is the rounded thumbnail.
    small = dec.decode(v, size=(16, 16))[0]
    assert _psnr(small / 255.0, thumbnail(img)) > 45
    # Full size: a smooth image is reconstructed closely by bicubic upsampling.
    full = dec.decode(v, size=(96, 64))[0]
    assert full.shape == (64, 96, 3) and full.dtype == np.uint8
    assert _psnr(full, img, peak=255) > 30
    assert dec.decode(v)[0].shape == (256, 256, 3)
    np.testing.assert_array_equal(full, dec.decode(v, size=(96, 64))[0])


def test_thumbnail_scale_recovered_after_rescaling():
    enc, dec = ThumbnailEncoder(grid=8), ThumbnailDecoder(grid=8)
    v = enc.encode_images([smooth_image(64, 96)])
    np.testing.assert_allclose(dec.thumbnails(3.0 * v), dec.thumbnails(v), atol=1e-6)
    # A degenerate scale component (lossy decoding) does not blow up.
    bad = v.copy()
    bad[0, -1] = -0.1
    out = dec.decode(bad, size=(8, 8))[0]
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)


def test_thumbnail_errors():
    with pytest.raises(InvalidInputError, match="no text tower"):
        ThumbnailEncoder().encode_text(["a cat"])
    with pytest.raises(InvalidInputError, match="769"):
        ThumbnailDecoder().decode(np.zeros((1, 10)))
    with pytest.raises(InvalidInputError):
        ThumbnailEncoder().encode_images([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(InvalidInputError):
        ThumbnailDecoder(size=(0, 5))


def test_pil_inputs_and_progress():
    from PIL import Image

    enc = ThumbnailEncoder(grid=4)
    seen = []
    v = enc.encode_images([Image.fromarray(smooth_image(64, 96)), smooth_image(64, 96)], batch_size=1, progress=seen.append)
    np.testing.assert_array_equal(v[0], v[1])
    assert seen == [1, 1]


# ---------------------------------------------------------------------------------------------- registry


def test_registry():
    enc = load_encoder("thumbnail")
    assert isinstance(enc, ThumbnailEncoder) and enc.name == "thumbnail"
    assert load_encoder("thumbnail:8").space == thumbnail_space(8)
    assert load_encoder(load_encoder("thumbnail:8").name).dim == thumbnail_dim(8)
    gen = load_generator("thumbnail", size=(32, 32))
    assert gen.space == enc.space and gen.fingerprint == enc.fingerprint
    with pytest.raises(InvalidInputError, match="known: thumbnail"):
        load_encoder("nope")
    with pytest.raises(InvalidInputError, match="kandinsky22"):
        load_generator("dalle")
    with pytest.raises(InvalidInputError, match="hf:"):
        load_encoder("hf")
    assert len(known_encoders()) >= 3 and len(known_generators()) >= 3


def test_missing_models_are_reported(tmp_path):
    with pytest.raises(MissingModelError, match="save_pretrained"):
        load_encoder(f"hf:{tmp_path / 'no-such-clip'}")
    with pytest.raises(MissingModelError, match="model_index.json"):
        load_generator(f"kandinsky22:{tmp_path / 'nothing'}")
    with pytest.raises(MissingModelError, match="model_index.json"):
        load_generator(f"stable-unclip:{tmp_path / 'nothing'}")


# ---------------------------------------------------------------------------------------------- tiny HF CLIP


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    pytest.importorskip("transformers")
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", seed=0)


def test_hf_clip_images(tiny_clip):
    from semzip.models.encoders import HFClipEncoder

    enc = HFClipEncoder(tiny_clip, device="cpu")
    assert enc.dim == 16 and enc.name == "hf:tiny-clip"  # the folder's name: archives record no paths
    assert enc.space.startswith("hf-clip:tiny-clip/clip/")
    imgs = random_images(5)
    a = enc.encode_images(imgs, batch_size=5)
    assert a.shape == (5, 16) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, enc.encode_images(imgs, batch_size=5))  # deterministic
    np.testing.assert_allclose(a, enc.encode_images(imgs, batch_size=2), atol=1e-5)  # batching-invariant
    np.testing.assert_allclose(a, np.concatenate([enc.encode_images([im]) for im in imgs]), atol=1e-5)
    assert not np.allclose(a[0], a[1])


def test_hf_clip_text(tiny_clip):
    from semzip.models.encoders import HFClipEncoder

    enc = HFClipEncoder(tiny_clip, device="cpu")
    t = enc.encode_text(["a cat", "cat", "a cat"])
    assert t.shape == (3, 16) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    assert not np.allclose(t[0], t[1])
    with pytest.raises(InvalidInputError):
        enc.encode_text([])


def test_hf_clip_fingerprint_and_registry(tiny_clip, tmp_path):
    from semzip.models.encoders import HFClipEncoder

    fp = HFClipEncoder(tiny_clip, device="cpu").fingerprint
    assert len(fp) == 16 and int(fp, 16) >= 0
    enc = load_encoder(f"hf:{tiny_clip}", device="cpu")
    assert enc.fingerprint == fp and enc.info()["dim"] == 16
    other = save_tiny_clip(tmp_path / "tiny-clip", seed=1)
    enc2 = HFClipEncoder(other, device="cpu")
    assert enc2.fingerprint != fp
    assert enc2.space == enc.space  # same architecture and preprocessing; the fingerprint tells them apart


def test_hf_clip_vision_only(tiny_clip, tmp_path):
    transformers = pytest.importorskip("transformers")
    from semzip.models.encoders import HFClipEncoder

    full = transformers.CLIPModel.from_pretrained(tiny_clip)
    vision = transformers.CLIPVisionModelWithProjection(full.config.vision_config)
    vision.config.projection_dim = full.config.projection_dim
    vision = transformers.CLIPVisionModelWithProjection(vision.config)
    vision.vision_model.load_state_dict(full.vision_model.state_dict())
    vision.visual_projection.load_state_dict(full.visual_projection.state_dict())
    folder = tmp_path / "vision"
    vision.save_pretrained(folder)
    for f in ("preprocessor_config.json",):
        (folder / f).write_bytes((tiny_clip / f).read_bytes())
    enc = HFClipEncoder(folder, device="cpu")
    imgs = random_images(2)
    np.testing.assert_allclose(
        enc.encode_images(imgs), HFClipEncoder(tiny_clip, device="cpu").encode_images(imgs), atol=1e-5
    )
    with pytest.raises(InvalidInputError, match="image-only"):
        enc.encode_text(["a cat"])


def test_hf_clip_broken_folder(tmp_path):
    pytest.importorskip("transformers")
    from semzip.models.encoders import HFClipEncoder

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises((MissingModelError, InvalidInputError)):
        HFClipEncoder(tmp_path / "broken")


# ---------------------------------------------------------------------------------------------- OpenCLIP


@pytest.fixture(scope="module")
def open_clip_b32(tmp_path_factory):
    """Random weights of OpenCLIP's ViT-B-32 saved the ways users keep them: a state dict, a safetensors file,
    a training checkpoint (``{"epoch", "state_dict"}`` with DDP's ``module.`` prefix)."""
    pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("openclip")
    model = random_open_clip("ViT-B-32", seed=0)
    state = model.state_dict()
    torch.save(state, d / "vit-b-32-random.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "vit-b-32.safetensors"))
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, d / "epoch_3.pt")
    return d


def test_open_clip_tiny_random(open_clip_b32):
    from semzip.models.encoders import OpenClipEncoder

    ckpt = open_clip_b32 / "vit-b-32-random.pt"
    enc = OpenClipEncoder("ViT-B-32", ckpt, device="cpu", weights_tag="random")
    assert enc.space == "open_clip:ViT-B-32/random" and enc.dim == 512
    v = enc.encode_images(random_images(2))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert enc.encode_text(["a cat"]).shape == (1, 512)
    for other in ("vit-b-32.safetensors", "epoch_3.pt"):  # the same weights in the other forms: same vectors
        enc2 = load_encoder(f"open_clip:ViT-B-32/{open_clip_b32 / other}")
        np.testing.assert_allclose(enc2.encode_images(random_images(2)), v, atol=1e-5)
    with pytest.raises(MissingModelError):
        OpenClipEncoder("ViT-B-32", open_clip_b32 / "missing.pt")


def test_open_clip_local_copy_declares_its_tag(open_clip_b32):
    """``<tag>@<file>``: a local copy of published weights keeps the published space (so SD-2.1-unCLIP-style
    generators accept it); an unknown tag is refused."""
    ckpt = open_clip_b32 / "vit-b-32.safetensors"
    enc = load_encoder(f"open_clip:ViT-B-32/openai@{ckpt}")
    assert enc.space == "open_clip:ViT-B-32/openai"
    plain = load_encoder(f"open_clip:ViT-B-32/{ckpt}")
    assert plain.space == "open_clip:ViT-B-32/vit-b-32.safetensors" and plain.fingerprint == enc.fingerprint
    with pytest.raises(InvalidInputError, match="no pretrained tag 'laion9'"):
        load_encoder(f"open_clip:ViT-B-32/laion9@{ckpt}")
    with pytest.raises(MissingModelError, match="not found"):
        load_encoder(f"open_clip:ViT-B-32/openai@{open_clip_b32 / 'absent.pt'}")


def test_open_clip_tag_from_a_warm_cache_and_refused_when_cold(open_clip_b32, tmp_path, monkeypatch, capfd):
    """A tag loads from the local hub cache without network; a tag that is not cached is one MissingModelError
    naming --allow-download (open_clip 3 raises a RuntimeError and logs to the root logger)."""
    from open_clip.pretrained import get_pretrained_cfg

    from semzip.models.encoders import OpenClipEncoder

    cache = tmp_path / "hub"
    with pytest.raises(MissingModelError, match="--allow-download") as err:
        OpenClipEncoder("ViT-B-32", "openai", cache_dir=cache)
    assert "\n" not in str(err.value)
    assert "Failed to download" not in capfd.readouterr().err
    cfg = get_pretrained_cfg("ViT-B-32", "openai")
    repo, fname = cfg["hf_hub"].rstrip("/"), "open_clip_pytorch_model.bin"
    if "/" in repo.split("/", 1)[1]:
        repo, fname = repo.rsplit("/", 1)[0], repo.rsplit("/", 1)[1]
    snap = cache / f"models--{repo.replace('/', '--')}"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0" * 40)
    (snap / "snapshots" / ("0" * 40)).mkdir(parents=True)
    import shutil

    shutil.copy(open_clip_b32 / "vit-b-32-random.pt", snap / "snapshots" / ("0" * 40) / fname)
    enc = OpenClipEncoder("ViT-B-32", "openai", cache_dir=cache)
    assert enc.space == "open_clip:ViT-B-32/openai" and enc.encode_text(["a dog"]).shape == (1, 512)


def test_open_clip_wrong_architecture_is_a_mismatch_not_a_download(open_clip_b32):
    from semzip.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError, match="not an OpenCLIP ViT-B-16 checkpoint") as err:
        load_encoder(f"open_clip:ViT-B-16/{open_clip_b32 / 'vit-b-32-random.pt'}")
    assert "download" not in str(err.value)
    with pytest.raises(InvalidInputError, match="no model 'ViT-Q-99'"):
        load_encoder(f"open_clip:ViT-Q-99/{open_clip_b32 / 'vit-b-32-random.pt'}")
