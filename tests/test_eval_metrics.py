"""Metrics: identical images, known distortions against scikit-image, honest unavailability."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_image

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

from semzip.errors import InvalidInputError
from semzip.eval import metrics as M


def _images(n=3, h=176, w=200, seed=0):
    return [random_image(h, w, seed + i, smooth=True) for i in range(n)]


def _noisy(images, sigma=8, seed=1):
    rng = np.random.default_rng(seed)
    return [np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8) for a in images]


@pytest.fixture(autouse=True)
def _no_weights(tmp_path, monkeypatch):
    """Point every weight lookup at an empty folder so results do not depend on the machine."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for env in (*M.BACKBONE_ENV.values(), M.INCEPTION_ENV):
        monkeypatch.delenv(env, raising=False)


def test_identical_images():
    a = _images()
    assert M.get_metric("psnr").compute(a, a) == [M.PSNR_CAP] * 3
    assert M.get_metric("ms-ssim").compute(a, a) == pytest.approx([1.0] * 3, abs=1e-5)
    sim = M.get_metric("clip")  # offline default encoder: reported as thumbnail similarity, not CLIP
    assert sim.name == "thumbnail-sim" and "not CLIP" in sim.label
    assert sim.compute(a, a) == pytest.approx([1.0] * 3, abs=1e-6)


def test_psnr_and_ssim_match_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a = _images()
    b = _noisy(a)
    ours = M.get_metric("psnr").compute(a, b)
    ref = [skm.peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)]
    assert ours == pytest.approx(ref, abs=1e-5)
    ours = M.get_metric("ssim").compute(a, b)
    ref = [skm.structural_similarity(x, y, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255) for x, y in zip(a, b)]
    assert ours == pytest.approx(ref, abs=5e-4)  # border handling differs slightly


def test_psnr_hand_computed_and_mixed_sizes():
    a = [np.full((10, 12, 3), 100, np.uint8), np.full((7, 5, 3), 50, np.uint8)]
    b = [np.full((10, 12, 3), 110, np.uint8), np.full((7, 5, 3), 49, np.uint8)]
    got = M.get_metric("psnr").compute(a, b)
    assert got == pytest.approx([10 * np.log10(255**2 / 100), 10 * np.log10(255**2 / 1)])


def test_ms_ssim_monotone_and_small_images_unavailable():
    a = _images(2)
    m = M.get_metric("ms-ssim")
    light, heavy = m.compute(a, _noisy(a, 4)), m.compute(a, _noisy(a, 30))
    assert all(1 > x > y for x, y in zip(light, heavy))
    small = [np.zeros((128, 192, 3), np.uint8)]
    reason = m.check(small)
    assert reason and "161" in reason
    out = M.evaluate([m], small, small)
    assert out["ms-ssim"] == {"unavailable": reason}


@pytest.mark.parametrize("name", ["lpips", "lpips-vgg", "dists", "fid", "kid"])
def test_weight_metrics_report_unavailable_with_reason(name):
    m = M.get_metric(name)
    ok, why = m.available()
    assert not ok and why
    a = _images(1)
    assert M.evaluate([m], a, a)[m.name] == {"unavailable": why}
    assert m.higher_is_better is False


def test_lpips_loading_path_with_user_supplied_backbone(tmp_path):
    """The real loading code on a backbone file in torchvision's format (random here: a plumbing test only)."""
    torch.manual_seed(0)
    feats = M.build_backbone("alex")
    path = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    m = M.get_metric("lpips", backbone=str(path))
    assert m.available() == (True, "")
    a = _images(2, 64, 64)
    assert m.compute(a, a) == pytest.approx([0.0, 0.0], abs=1e-7)
    assert all(v > 0 for v in m.compute(a, _noisy(a, 20)))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(InvalidInputError):
        M.get_metric("lpips", backbone=str(bad)).compute(a, a)


def test_patch_fid_kid_with_custom_extractor():
    assert len(M.extract_patches([np.zeros((512, 768, 3), np.uint8)])) == 6 + 2  # Kodak: 8 patches per image

    class Tiny(torch.nn.Module):  # stand-in feature extractor: per-channel mean and spread of a patch
        num_features = 6

        def forward(self, x):
            x = x.double() / 255
            return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    a = _images(3, 64, 96)
    fid = M.get_metric("fid", extractor=Tiny(), patch=32)
    assert fid.available() == (True, "") and fid.set_level
    same = fid.compute(a, a)
    assert abs(same) < 1e-3
    grey = [np.full_like(x, 128) for x in a]
    assert fid.compute(a, grey) > 1e-2
    kid = M.get_metric("kid", extractor=Tiny(), patch=32)
    out = M.evaluate([kid], a, grey)
    assert out["kid"]["value"] > 0 and out["kid"]["n_patches"] == 3 * (6 + 2)


def test_caption_similarity_needs_a_text_encoder():
    m = M.get_metric("clip-text")
    ok, why = m.available()
    assert not ok and "text" in why
    assert m.check([np.zeros((8, 8, 3), np.uint8)], [None]) is not None


def test_registry():
    assert M.get_metric("lpips").name == "lpips-alex"
    assert M.get_metric("psnr", encoder="ignored").higher_is_better
    with pytest.raises(InvalidInputError):
        M.get_metric("nope")
    with pytest.raises(InvalidInputError):
        M.get_metric("psnr").compute([np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 5, 3), np.uint8)])
