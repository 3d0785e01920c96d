"""Tests for the generators: the offline thumbnail renderer and tiny random diffusers pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import smooth_image

from semzip.errors import InvalidInputError, MissingModelError
from semzip.models.generators import ThumbnailGenerator
from semzip.models.thumbnail import ThumbnailEncoder
from semzip.models.tiny import EMBED_DIM, save_tiny_kandinsky, save_tiny_stable_unclip


def test_thumbnail_generator():
    enc, gen = ThumbnailEncoder(), ThumbnailGenerator(size=(64, 48))
    assert gen.space == enc.space and gen.dim == enc.dim
    v = enc.encode_images([smooth_image(48, 64), smooth_image(48, 64)[::-1].copy()])
    seen = []
    a = gen.generate(v, seed=1, progress=seen.append)
    b = gen.generate(v, seed=2)
    assert seen == [2] and len(a) == 2
    assert a[0].shape == (48, 64, 3) and a[0].dtype == np.uint8
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # deterministic, seed ignored
    assert gen.generate(v, size=(20, 10))[0].shape == (10, 20, 3)
    assert gen.params()["space"] == enc.space
    with pytest.raises(InvalidInputError):
        gen.generate(np.zeros((1, 5)))


# ---------------------------------------------------------------------------------------------- Kandinsky 2.2

@pytest.fixture(scope="module")
def kandinsky(tmp_path_factory):
    from semzip.models.generators import KandinskyV22Generator

    pytest.importorskip("diffusers")
    folder = save_tiny_kandinsky(tmp_path_factory.mktemp("k22") / "tiny-k22")
    return KandinskyV22Generator(folder, device="cpu", batch_size=2, size=(32, 32), embed_norm=3.0)


def _embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_kandinsky_shape_and_seeds(kandinsky):
    v = _embeddings(1, EMBED_DIM)
    a = kandinsky.generate(v, seed=3, steps=2)
    assert len(a) == 1 and a[0].shape == (32, 32, 3) and a[0].dtype == np.uint8
    np.testing.assert_array_equal(a[0], kandinsky.generate(v, seed=3, steps=2)[0])
    assert not np.array_equal(a[0], kandinsky.generate(v, seed=4, steps=2)[0])


def test_kandinsky_batch_equals_singles(kandinsky):
    v = _embeddings(3, EMBED_DIM, seed=1)
    seen = []
    batch = kandinsky.generate(v, seed=10, steps=2, progress=seen.append)  # batch_size 2: batches of 2 and 1
    assert seen == [2, 1]
    singles = [kandinsky.generate(v[i : i + 1], seed=10 + i, steps=2)[0] for i in range(3)]
    for b, s in zip(batch, singles, strict=True):
        assert np.abs(b.astype(int) - s.astype(int)).max() <= 1  # float batching noise at most one level
    assert not np.array_equal(batch[0], batch[1])


def test_kandinsky_params_and_identity(kandinsky):
    from semzip.models.generators import KANDINSKY22_SPACE

    p = kandinsky.params(seed=5, steps=2)
    assert p["seed"] == 5 and p["steps"] == 2 and p["guidance"] == 4.0
    assert p["scheduler"] == "DDPMScheduler" and p["size"] == [32, 32]
    assert p["negative_image_embeds"] == "zeros" and p["embed_norm"] == 3.0
    assert kandinsky.space == KANDINSKY22_SPACE and kandinsky.dim == EMBED_DIM
    assert len(kandinsky.fingerprint) == 16
    with pytest.raises(InvalidInputError, match="divisible"):
        kandinsky.generate(_embeddings(1, EMBED_DIM), size=(30, 30), steps=1)
    with pytest.raises(InvalidInputError):
        kandinsky.generate(_embeddings(1, 7), steps=1)


def test_kandinsky_registry_and_missing(kandinsky, tmp_path):
    from semzip.models.registry import load_generator

    gen = load_generator(f"kandinsky22:{kandinsky.path}", device="cpu", size=(32, 32))
    assert gen.fingerprint == kandinsky.fingerprint
    assert gen.embed_norm == pytest.approx(np.sqrt(EMBED_DIM))  # no prior given: unit RMS per dimension
    with pytest.raises(MissingModelError, match="model_index.json"):
        load_generator(f"kandinsky22:{tmp_path}")


# ---------------------------------------------------------------------------------------------- Stable unCLIP


def test_stable_unclip_tiny(tmp_path):
    from semzip.models.generators import STABLE_UNCLIP_SPACE, StableUnCLIPGenerator
    from semzip.models.registry import load_generator

    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    folder = save_tiny_stable_unclip(tmp_path / "tiny-unclip")
    gen = StableUnCLIPGenerator(folder, device="cpu", batch_size=2, noise_level=10)
    assert gen.space == STABLE_UNCLIP_SPACE and gen.dim == EMBED_DIM
    assert gen.params()["size"] == [16, 16]  # unet sample size x vae scale factor (1)
    # expected norm under the normaliser's statistics: sqrt(||mean||^2 + ||std||^2)
    expected = float(np.sqrt((np.linspace(-1, 1, EMBED_DIM) ** 2).sum() + 0.25 * EMBED_DIM))
    assert gen.embed_norm == pytest.approx(expected, rel=1e-5)
    v = _embeddings(2, EMBED_DIM, seed=2)
    batch = gen.generate(v, seed=7, steps=2)
    assert len(batch) == 2 and batch[0].shape == (16, 16, 3) and batch[0].dtype == np.uint8
    singles = [gen.generate(v[i : i + 1], seed=7 + i, steps=2)[0] for i in range(2)]
    for b, s in zip(batch, singles, strict=True):
        assert np.abs(b.astype(int) - s.astype(int)).max() <= 1
    assert not np.array_equal(gen.generate(v[:1], seed=8, steps=2)[0], singles[0])
    p = gen.params(seed=7, steps=2, guidance=3.0)
    assert p["scheduler"] == "DDIMScheduler" and p["noise_level"] == 10 and p["guidance"] == 3.0
    assert load_generator(f"stable-unclip:{folder}", device="cpu").fingerprint == gen.fingerprint


def test_downloaded_pipeline_is_fingerprinted_from_its_weights(tmp_path, monkeypatch):
    """A pipeline loaded from the hub (--allow-download) has no local folder: the fingerprint covers the UNet's
    weights instead of failing on a folder that is not there."""
    pytest.importorskip("diffusers")
    from semzip.models import torch_utils
    from semzip.models.fingerprint import fingerprint_state_dict
    from semzip.models.generators import KandinskyV22Generator

    folder = save_tiny_kandinsky(tmp_path / "tiny-k22")
    real = torch_utils.load_diffusers_pipeline

    def from_the_hub(*args, **kw):
        pipe, _ = real(*args, **kw)
        return pipe, "org/downloaded-k22"  # what a download returns: the hub id, no folder to hash

    monkeypatch.setattr(torch_utils, "load_diffusers_pipeline", from_the_hub)
    gen = KandinskyV22Generator(folder, device="cpu", size=(32, 32), embed_norm=3.0)
    assert gen.fingerprint == fingerprint_state_dict(gen.pipe.unet.state_dict())
    assert gen.params()["fingerprint"] == gen.fingerprint
