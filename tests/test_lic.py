"""Tests for semzip.models.lic: the tiny hyperprior on random weights (real architecture, real coding path)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from semzip.entropy import CategoricalModel
from semzip.errors import (
    EntropyDecodeError,
    InvalidInputError,
    MissingModelError,
    ModelMismatchError,
    ResourceLimitError,
    SemzipError,
)
from semzip.models.lic import (
    DEFAULT_WEIGHTS,
    LICShape,
    TinyHyperprior,
    load_lic,
)


def _image(h: int = 70, w: int = 90, seed: int = 0) -> np.ndarray:
    """A smooth colourful test image with some texture (not constant, so the rate knob matters)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 100 * np.sin(xx / 9), 128 + 100 * np.cos(yy / 7), 128 + 60 * np.sin((xx + yy) / 13)], 2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def model() -> TinyHyperprior:
    return TinyHyperprior.random(seed=0)


@pytest.fixture(scope="module")
def coded(model):
    img = _image()
    streams, shape = model.compress(img)
    return img, streams, shape


def test_round_trip_shape_and_repeatable_decode(model, coded):
    img, streams, shape = coded
    assert len(streams) == 2 and all(isinstance(s, bytes) for s in streams)
    assert (shape.height, shape.width) == img.shape[:2] and shape.model == model.fingerprint
    a = model.decompress(streams, shape)
    b = model.decompress(streams, shape.to_bytes())
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_bitstream_is_deterministic_across_instances(coded):
    img, streams, shape = coded
    other = TinyHyperprior.random(seed=0)  # same seed: same weights, same tables
    s2, sh2 = other.compress(img)
    assert s2 == streams and sh2 == shape
    assert np.array_equal(other.decompress(streams, shape), TinyHyperprior.random(seed=0).decompress(s2, sh2))


def test_shape_bytes_round_trip():
    s = LICShape(512, 768, 256, 384, model="0123456789abcdef")
    assert LICShape.from_bytes(s.to_bytes()) == s
    s0 = LICShape(5, 6, 5, 6)
    assert LICShape.from_bytes(s0.to_bytes()) == s0
    for bad in (b"", b"\x09", s.to_bytes()[:-3], s.to_bytes() + b"x"):
        with pytest.raises(EntropyDecodeError):
            LICShape.from_bytes(bad)


def test_other_model_is_refused(coded):
    _img, streams, shape = coded
    other = TinyHyperprior.random(seed=1)
    assert other.fingerprint != shape.model
    with pytest.raises(ModelMismatchError):
        other.decompress(streams, shape)
    # Without the fingerprint in the shape record, the z tables / scale-index checksum still refuse it.
    bare = LICShape(shape.height, shape.width, shape.coded_height, shape.coded_width)
    with pytest.raises(EntropyDecodeError):
        other.decompress(streams, bare)


def test_corrupt_streams_raise_semzip_errors(model, coded):
    img, streams, shape = coded
    y, z = streams
    with pytest.raises(EntropyDecodeError):
        model.decompress([y[:3], z], shape)
    flipped_z = bytes([z[0] ^ 0xFF]) + z[1:]
    with pytest.raises(SemzipError):
        model.decompress([y, flipped_z], shape)
    with pytest.raises(SemzipError):
        model.decompress([y, z[: len(z) // 2]], shape)
    bad_crc = bytes([y[0] ^ 1]) + y[1:]
    with pytest.raises(EntropyDecodeError, match="checksum"):
        model.decompress([bad_crc, z], shape)
    rng = np.random.default_rng(0)
    for _ in range(5):  # garbage after a valid checksum: a SemzipError or an image, never a raw exception
        junk = y[:4] + rng.integers(0, 256, size=len(y) - 4, dtype=np.uint8).tobytes()
        try:
            out = model.decompress([junk, z], shape)
            assert out.shape == img.shape
        except SemzipError:
            pass
    with pytest.raises(InvalidInputError):
        model.decompress([y], shape)
    with pytest.raises(InvalidInputError):
        model.decompress([y, "z"], shape)
    with pytest.raises(ResourceLimitError):
        model.decompress(streams, LICShape(10**5, 10**5, 10**5, 10**5, model=model.fingerprint))
    with pytest.raises(EntropyDecodeError):
        model.decompress(streams, b"\x01\x00")


def test_downscale_knob_lowers_rate(model):
    img = _image(128, 160, seed=3)
    full, _sh1 = model.compress(img, scale=1.0)
    quarter, sh2 = model.compress(img, scale=0.25)
    assert sum(map(len, quarter)) < sum(map(len, full))
    assert (sh2.coded_height, sh2.coded_width) == (32, 40)
    assert model.decompress(quarter, sh2).shape == img.shape


def test_bad_inputs(model):
    with pytest.raises(InvalidInputError):
        model.compress(np.zeros((8, 8), np.uint8))
    with pytest.raises(InvalidInputError):
        model.compress(np.zeros((8, 8, 3), np.float32))
    for s in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError):
            model.compress(_image(16, 16), scale=s)


def test_z_tables_are_integer_models(model):
    assert len(model.z_models) == model.net.Nh
    for m in model.z_models:
        assert isinstance(m, CategoricalModel) and int(m.freqs.astype(np.int64).sum()) == 2**16


def test_save_load_round_trip(tmp_path, model):
    path = model.save(tmp_path / "m.safetensors", info={"note": "test"})
    a, b = TinyHyperprior.from_file(path), TinyHyperprior.from_file(path)
    assert a.fingerprint == b.fingerprint and a.meta["note"] == "test"
    for ma, mo in zip(a.z_models, model.z_models):  # tables are stored as integers, not recomputed
        assert ma == mo
    img = _image(40, 50)
    streams, shape = a.compress(img)
    assert np.array_equal(b.decompress(streams, shape), a.decompress(streams, shape))
    assert a.fingerprint != TinyHyperprior.random(seed=5).fingerprint


def test_loader_errors(tmp_path):
    with pytest.raises(MissingModelError, match="build_lic_default"):
        TinyHyperprior.from_file(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(MissingModelError):
        TinyHyperprior.from_file(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"semzip_model": "something-else"})
    with pytest.raises(ModelMismatchError):
        TinyHyperprior.from_file(other)
    with pytest.raises(InvalidInputError):
        load_lic("nope")
    with pytest.raises(MissingModelError):
        load_lic(f"tiny:{tmp_path / 'absent.safetensors'}")


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="default LIC weights not built")
def test_default_weights_code_an_image():
    m = load_lic("tiny")
    img = _image(64, 96, seed=7)
    streams, shape = m.compress(img, scale=0.5)
    out = m.decompress(streams, shape)
    assert out.shape == img.shape
    assert m.meta.get("steps", 0) > 0


def test_compressai_checkpoint_round_trip(tmp_path):
    pytest.importorskip("compressai")
    from compressai.zoo import image_models

    from semzip.models.lic import CompressAILIC

    net = image_models["bmshj2018-hyperprior"](quality=1, pretrained=False)
    torch.save(net.state_dict(), tmp_path / "ckpt.pth")
    codec = CompressAILIC("bmshj2018-hyperprior", checkpoint=tmp_path / "ckpt.pth")
    img = _image(64, 64)
    streams, shape = codec.compress(img)
    assert codec.decompress(streams, shape).shape == img.shape
    with pytest.raises(MissingModelError):
        CompressAILIC("mbt2018-mean", quality=8)  # zoo weights absent offline, no download unless asked
