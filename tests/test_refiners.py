"""Tests for the refiners: the identity default and a tiny random Stable Diffusion img2img pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import smooth_image

from semzip.errors import InvalidInputError, MissingModelError
from semzip.models.refiners import IDENTITY_NOTE, IdentityRefiner, resize_rgb
from semzip.models.registry import known_refiners, load_refiner
from semzip.models.tiny import save_tiny_controlnet, save_tiny_sd_img2img


def test_identity_refiner():
    ref = load_refiner()
    assert isinstance(ref, IdentityRefiner) and ref.name == "identity" and ref.description == IDENTITY_NOTE
    a, b = smooth_image(), smooth_image(12, 16, seed=1)
    seen = []
    out = ref.refine([a, b], ["a caption", "another"], seed=3, sizes=[(32, 24), (64, 48)], progress=seen.append)
    assert seen == [2]
    np.testing.assert_array_equal(out[0], a)  # same size: unchanged
    assert out[1].shape == (48, 64, 3) and out[1].dtype == np.uint8
    np.testing.assert_array_equal(out[1], resize_rgb(b, (64, 48)))
    assert ref.refine([b], sizes=(20, 10))[0].shape == (10, 20, 3)
    assert ref.refine(a)[0].shape == a.shape  # one image, no caption, no size
    p = ref.params(seed=1, size=(64, 48))
    assert p["refiner"] == "identity" and p["note"] == IDENTITY_NOTE and p["size"] == [64, 48]
    assert len(ref.fingerprint) == 16
    with pytest.raises(InvalidInputError, match="captions"):
        ref.refine([a, b], ["one"])
    with pytest.raises(InvalidInputError, match="sizes"):
        ref.refine([a, b], sizes=[(8, 8)] * 3)
    with pytest.raises(InvalidInputError):
        ref.refine([np.zeros((4, 4), np.float32)])


def test_refiner_registry(tmp_path):
    assert any(u.startswith("identity") for u in known_refiners())
    with pytest.raises(InvalidInputError, match="unknown refiner"):
        load_refiner("sdxl:/x")
    with pytest.raises(MissingModelError, match="model_index.json"):
        load_refiner(f"sd-img2img:{tmp_path}")
    with pytest.raises(InvalidInputError, match="controlnet-tile:<sd"):
        load_refiner(f"controlnet-tile:{tmp_path}")
    with pytest.raises(MissingModelError, match="ControlNet not found"):
        load_refiner(f"controlnet-tile:{tmp_path},{tmp_path / 'cn'}")


# ---------------------------------------------------------------------------------------- tiny SD img2img


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    return save_tiny_sd_img2img(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def sd_refiner(tiny_sd):
    from semzip.models.refiners import SDImg2ImgRefiner

    return SDImg2ImgRefiner(tiny_sd, device="cpu", batch_size=2)


def test_sd_img2img_shape_and_seeds(sd_refiner):
    lic = smooth_image(12, 16)
    a = sd_refiner.refine([lic], ["a red cat"], seed=3, steps=2, strength=0.5, sizes=(32, 24))
    assert len(a) == 1 and a[0].shape == (24, 32, 3) and a[0].dtype == np.uint8
    np.testing.assert_array_equal(a[0], sd_refiner.refine([lic], ["a red cat"], seed=3, steps=2, strength=0.5,
                                                          sizes=(32, 24))[0])
    assert not np.array_equal(a[0], sd_refiner.refine([lic], ["a red cat"], seed=4, steps=2, strength=0.5,
                                                      sizes=(32, 24))[0])
    # an output size off the multiple of 8: the pipeline runs at 24x16 and the result is resized back
    odd = sd_refiner.refine([lic], ["x"], seed=3, steps=2, strength=0.5, sizes=(27, 18))[0]
    assert odd.shape == (18, 27, 3)
    assert sd_refiner.work_size((27, 18)) == (24, 16)


def test_sd_img2img_batch_equals_singles(sd_refiner):
    lics = [smooth_image(24, 32, seed=i) for i in range(3)]
    caps = ["a red cat", "a blue sky", "cat cat"]
    seen = []
    batch = sd_refiner.refine(lics, caps, seed=10, steps=2, strength=0.6, guidance=3.0, progress=seen.append)
    assert seen == [2, 1]  # batch_size 2
    singles = [sd_refiner.refine([lics[i]], [caps[i]], seed=10 + i, steps=2, strength=0.6, guidance=3.0)[0]
               for i in range(3)]
    for b, s in zip(batch, singles, strict=True):
        assert b.shape == (24, 32, 3)
        assert np.abs(b.astype(int) - s.astype(int)).max() <= 1  # float batching noise at most one level
    assert not np.array_equal(batch[0], batch[1])


def test_sd_img2img_params(sd_refiner, tiny_sd):
    p = sd_refiner.params(seed=7, steps=10, strength=0.3, guidance=2.0, size=(32, 24))
    for key in ("refiner", "fingerprint", "seed", "seeding", "scheduler", "scheduler_config", "steps", "strength",
                "guidance", "size", "dtype", "negative_prompt"):
        assert key in p
    assert p["refiner"] == f"sd-img2img:{tiny_sd}" and p["seed"] == 7 and p["steps"] == 10
    assert p["strength"] == 0.3 and p["denoising_steps"] == 3 and p["guidance"] == 2.0
    assert p["scheduler"] == "DDIMScheduler" and p["size"] == [32, 24] and p["dtype"] == "float32"
    assert sd_refiner.params()["steps"] == sd_refiner.default_steps
    assert len(sd_refiner.fingerprint) == 16
    assert load_refiner(f"sd-img2img:{tiny_sd}", device="cpu").fingerprint == sd_refiner.fingerprint
    with pytest.raises(InvalidInputError, match="strength"):
        sd_refiner.refine([smooth_image()], ["x"], strength=0.0)
    with pytest.raises(InvalidInputError, match="denoising step"):
        sd_refiner.refine([smooth_image()], ["x"], steps=2, strength=0.2)


def test_controlnet_tile_tiny(tiny_sd, tmp_path):
    from semzip.models.refiners import ControlNetTileRefiner

    save_tiny_controlnet(tmp_path / "cn")
    ref = ControlNetTileRefiner(tiny_sd, tmp_path / "cn", device="cpu", conditioning_scale=0.8)
    lic = smooth_image(24, 32)
    a = ref.refine([lic], ["a red cat"], seed=1, steps=2)
    assert a[0].shape == (24, 32, 3) and a[0].dtype == np.uint8
    np.testing.assert_array_equal(a[0], ref.refine([lic], ["a red cat"], seed=1, steps=2)[0])
    p = ref.params(seed=1, steps=2)
    assert p["controlnet_conditioning_scale"] == 0.8 and p["strength"] == ref.default_strength
    sd_only = load_refiner(f"sd-img2img:{tiny_sd}", device="cpu")
    assert len(ref.fingerprint) == 16 and ref.fingerprint != sd_only.fingerprint
