"""Tests for semzip.models.lic: the tiny hyperprior on random weights (real architecture, real coding path)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tally, textured_image

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


@pytest.fixture(scope="module")
def model() -> TinyHyperprior:
    return TinyHyperprior.random(seed=0)


@pytest.fixture(scope="module")
def coded(model):
    img = textured_image()
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
    junk = [y[:4] + rng.integers(0, 256, size=len(y) - 4, dtype=np.uint8).tobytes() for _ in range(5)]

    def decode(stream: bytes) -> None:
        assert model.decompress([stream, z], shape).shape == img.shape

    # garbage y after its scale checksum (still valid: z is intact): never a raw exception, and every one is
    # refused (by the end-of-stream check: the garbage does not end where the decoded symbols do)
    assert tally(decode, junk) == {"EntropyDecodeError": 5}
    with pytest.raises(InvalidInputError):
        model.decompress([y], shape)
    with pytest.raises(InvalidInputError):
        model.decompress([y, "z"], shape)
    with pytest.raises(ResourceLimitError):
        model.decompress(streams, LICShape(10**5, 10**5, 10**5, 10**5, model=model.fingerprint))
    with pytest.raises(EntropyDecodeError):
        model.decompress(streams, b"\x01\x00")


def test_downscale_knob_lowers_rate(model):
    img = textured_image(128, 160, seed=3)
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
            model.compress(textured_image(16, 16), scale=s)


def test_z_tables_are_integer_models(model):
    assert len(model.z_models) == model.net.Nh
    for m in model.z_models:
        assert isinstance(m, CategoricalModel) and int(m.freqs.astype(np.int64).sum()) == 2**16


def test_save_load_round_trip(tmp_path, model):
    from semzip.format.container import new_file_mode

    path = model.save(tmp_path / "m.safetensors", info={"note": "test"})
    assert path.stat().st_mode & 0o777 == new_file_mode() and [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]
    a, b = TinyHyperprior.from_file(path), TinyHyperprior.from_file(path)
    assert a.fingerprint == b.fingerprint and a.meta["note"] == "test"
    for ma, mo in zip(a.z_models, model.z_models):  # tables are stored as integers, not recomputed
        assert ma == mo
    img = textured_image(40, 50)
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
def test_default_weights_code_a_textured_image():
    m = load_lic("tiny")
    img = textured_image(64, 96, seed=7)
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
    img = textured_image(64, 64)
    streams, shape = codec.compress(img)
    assert codec.decompress(streams, shape).shape == img.shape
    with pytest.raises(MissingModelError):
        CompressAILIC("mbt2018-mean", quality=8)  # zoo weights absent offline, no download unless asked


# ----------------------------------------------------------------------------- integer-exact entropy path


def test_integer_path_round_trip(model, coded):
    from semzip.models.lic import HS_FRAC_BITS, STREAM_VERSION, integer_digest

    img, streams, shape = coded
    assert shape.version == STREAM_VERSION == 2 and shape.to_bytes()[0] == 2
    ints = model.decode_integers(streams, shape)
    assert ints.version == 2 and ints.y_hat_q.dtype == np.int64 and ints.mu.dtype == np.int64
    assert np.array_equal(ints.y_hat_q, ints.residuals * 2**HS_FRAC_BITS + ints.mu)
    assert ints.scale_idx.shape == ints.mu.shape == (model.net.M, 8, 8)  # 70x90 pads to 128x128: y is 1/16
    # the encoder coded round(y - mu) with the same integer mu and indices the decoder recomputes
    mu, idx = model.int_hyper(ints.z_hat)
    assert np.array_equal(mu, ints.mu) and np.array_equal(idx, ints.scale_idx)
    d = integer_digest(model, streams, shape.to_bytes())
    assert d == ints.digest() and d["version"] == 2 and len(d["y_hat"]) == 64
    out = model.decompress(streams, shape)
    assert out.shape == img.shape and np.abs(out.astype(int) - img.astype(int)).mean() < 128


def test_legacy_float_streams_still_decode(model, coded):
    import dataclasses

    img, v2_streams, v2_shape = coded
    streams, shape = model.compress(img, version=1)  # the float32 h_s path every archive so far was written with
    assert shape.version == 1 and shape.to_bytes()[0] == 1 and LICShape.from_bytes(shape.to_bytes()) == shape
    a = model.decompress(streams, shape.to_bytes())
    assert a.shape == img.shape and np.array_equal(a, model.decompress(streams, shape))
    ints = model.decode_integers(streams, shape)
    assert ints.version == 1 and ints.y_hat_q is None and ints.mu.dtype == np.float32
    # a stream read under the other version fails its checksum instead of decoding into noise
    with pytest.raises(EntropyDecodeError, match="checksum"):
        model.decompress(streams, dataclasses.replace(shape, version=2))
    with pytest.raises(EntropyDecodeError, match="checksum"):
        model.decompress(v2_streams, dataclasses.replace(v2_shape, version=1))
    with pytest.raises(InvalidInputError):
        model.compress(img, version=3)
    with pytest.raises(InvalidInputError):
        LICShape(1, 1, 1, 1, version=3)
    with pytest.raises(EntropyDecodeError, match="version"):
        LICShape.from_bytes(b"\x03" + shape.to_bytes()[1:])


def test_integer_layers_equal_the_torch_convolutions_exactly():
    """Geometry of the integer layers (transposed conv as output phases) against torch in float64, on values
    where float64 is exact: the only difference allowed is the final round-half-up to Q12."""
    from semzip.models.lic import HS_FRAC_BITS, _IntLayer

    F = torch.nn.functional
    rng = np.random.default_rng(0)
    for transposed, k, s in [(True, 5, 2), (True, 4, 2), (True, 3, 2), (False, 3, 1), (False, 5, 1)]:
        cin, cout = 5, 7
        wshape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        w = (rng.integers(-50, 50, wshape) / 64).astype(np.float32)  # dyadic: held exactly at any shift
        b = (rng.integers(-50, 50, cout) / 64).astype(np.float16)
        x = rng.integers(-3000, 3000, (cin, 6, 9))
        got = _IntLayer.build(w, b, transposed, s)(x)
        args = (torch.from_numpy(x / 2.0**HS_FRAC_BITS)[None], torch.from_numpy(w.astype(np.float64)),
                torch.from_numpy(b.astype(np.float64)))
        ref = (F.conv_transpose2d(*args, stride=s, padding=k // 2, output_padding=s - 1) if transposed
               else F.conv2d(*args, padding=k // 2))[0].numpy()
        assert np.array_equal(got, np.floor(ref * 2**HS_FRAC_BITS + 0.5).astype(np.int64)), (transposed, k)


def test_integer_h_s_follows_the_float_network(model):
    """The integer h_s approximates the trained float one closely (so the rate barely changes)."""
    rng = np.random.default_rng(1)
    z = rng.integers(-4, 5, (model.net.Nh, 6, 5))
    mu_q, idx = model.int_hyper(z)
    mu_f, idx_f = model._hyper_indices(z, version=1)
    assert np.abs(mu_q / 4096 - mu_f).max() < 0.01
    assert np.abs(idx - idx_f).max() <= 1 and (idx != idx_f).mean() < 0.01


def test_scale_thresholds_are_the_softplus_boundaries():
    import math

    from semzip.entropy import QuantizedGaussianTable
    from semzip.models.lic import softplus_thresholds

    table = QuantizedGaussianTable()
    t = softplus_thresholds(table.boundaries)
    for tk, bk in zip(t.tolist(), table.boundaries.tolist()):
        g = 4096 * math.log(math.expm1(bk - 0.11))
        assert tk - 1 < g + 1e-6 and g - 1e-6 <= tk  # the ceiling of 2**12 * softplus^-1(b_k - 0.11)
    # pinned: the thresholds define which table a version-2 stream uses, on every machine
    assert t[:3].tolist() == [-20320, -15532, -13141] and t[-1] == 985554 and len(t) == 63
    raw = np.array([-10**6, t[0] - 1, t[0], t[30], t[-1] - 1, t[-1], 10**7])
    sigma = 0.11 + np.logaddexp(0.0, raw / 4096.0)  # softplus
    assert np.searchsorted(t, raw, side="right").tolist() == [0, 0, 1, 31, 62, 63, 63]
    assert np.searchsorted(t, raw, side="right").tolist()[1:-1] == table.scale_index(sigma).tolist()[1:-1]


def test_integer_h_s_needs_no_torch(model, tmp_path):
    """The version-2 indices and mu come from numpy integers alone: a process where torch cannot even be
    imported rebuilds them from the fp16 weights file; and decoding never calls the float h_s."""
    import json
    import subprocess
    import sys

    path = model.save(tmp_path / "m.safetensors")
    m = TinyHyperprior.from_file(path)
    z = np.random.default_rng(2).integers(-5, 6, (m.net.Nh, 3, 4))
    mu, idx = m.int_hyper(z)
    child = (
        "import json, sys; sys.modules['torch'] = None\n"
        "import numpy as np; from safetensors.numpy import load_file\n"
        "from semzip.entropy import QuantizedGaussianTable; from semzip.models.lic import IntHyperSynthesis\n"
        "st = load_file(sys.argv[1]); z = np.array(json.loads(sys.argv[2]))\n"
        "hs = IntHyperSynthesis({k[4:]: v for k, v in st.items() if k.startswith('h_s.')}, "
        "QuantizedGaussianTable().boundaries)\n"
        "mu, idx = hs(z); assert st['h_s.0.weight'].dtype == np.float16 and sys.modules['torch'] is None\n"
        "print(json.dumps([mu.tolist(), idx.tolist()]))"
    )
    r = subprocess.run([sys.executable, "-c", child, str(path), json.dumps(z.tolist())], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [mu.tolist(), idx.tolist()]

    img = textured_image(40, 50)
    streams, shape = m.compress(img)
    want = m.decode_integers(streams, shape).digest()

    def refuse(*_a, **_k):
        raise AssertionError("the float hyper-synthesis ran on a version-2 stream")

    m.net.hyper = refuse
    m.net.h_s.forward = refuse
    assert m.decode_integers(streams, shape).digest() == want
    m.decompress(streams, shape)


LIC_ENV_CHILD = (
    "import json, os, sys, torch; torch.set_num_threads(int(os.environ.get('LIC_THREADS', '2')))\n"
    "from semzip.models.lic import integer_digest, load_lic\n"
    "s = json.loads(sys.stdin.read()); lic = load_lic(s['spec'])\n"
    "print(json.dumps({'cap': torch.backends.cpu.get_cpu_capability(), 'threads': torch.get_num_threads(), "
    "'d': [integer_digest(lic, [bytes.fromhex(h) for h in x['streams']], bytes.fromhex(x['shape'])) "
    "for x in s['items']]}))"
)


def test_decoded_integers_identical_across_cpu_kernels_and_threads(tmp_path):
    """The acceptance check of the decode-anywhere rule: scale indices, residuals, mu and y_hat of version-2
    streams are identical in processes with other ATen SIMD kernels, MKL's compatible mode, 1 or 2 threads."""
    import json
    import os
    import subprocess
    import sys

    from semzip.models.lic import integer_digest

    if DEFAULT_WEIGHTS.is_file():
        lic, spec = load_lic("tiny"), "tiny"
    else:  # pragma: no cover - the shipped weights are in the repository
        path = TinyHyperprior.random(seed=0).save(tmp_path / "m.safetensors")
        lic, spec = TinyHyperprior.from_file(path), f"tiny:{path}"
    items, here = [], []
    for img, scale in ((textured_image(64, 96, seed=7), 1.0), (textured_image(200, 140, seed=8), 1.0), (textured_image(200, 140, 9), 0.5)):
        streams, shape = lic.compress(img, scale=scale)
        items.append({"streams": [s.hex() for s in streams], "shape": shape.to_bytes().hex()})
        here.append(integer_digest(lic, streams, shape))
    payload = json.dumps({"spec": spec, "items": items})
    variants = [{"ATEN_CPU_CAPABILITY": "default"}, {"ATEN_CPU_CAPABILITY": "avx2"}, {"MKL_CBWR": "COMPATIBLE"},
                {"OMP_NUM_THREADS": "1", "LIC_THREADS": "1"}, {"OMP_NUM_THREADS": "2", "LIC_THREADS": "2"}]
    base = {k: v for k, v in os.environ.items()
            if not k.endswith("_NUM_THREADS") and k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    procs = [subprocess.Popen([sys.executable, "-c", LIC_ENV_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**base, **v}) for v in variants]
    results = []
    for p in procs:
        out, err = p.communicate(payload, timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    caps = [r["cap"] for r in results]
    assert caps[0] == "DEFAULT" and caps[1] in ("AVX2", "DEFAULT")  # avx2 where the CPU has it
    assert [r["threads"] for r in results[3:]] == [1, 2]
    for v, r in zip(variants, results):
        assert r["d"] == here, f"decoded integers differ under {v}"


def test_integer_weight_conversion_is_exact_and_bounded():
    """Per-channel power-of-two scales: the largest weight lands in [2**14, 2**15], fp16 values stay exact,
    negligible ones round to 0 (not -1), tiny channels stop at Q24; oversized parameters are refused."""
    from semzip.models.lic import _IntLayer

    w = np.zeros((3, 2, 3, 3), np.float32)
    w[0, 0, 0, 0], w[0, 0, 0, 1], w[0, 1, 1, 1] = 0.75, -1e-30, np.float16(-0.0123)
    w[1, 0, 0, 0] = -3e-8  # alone in its channel: shift capped at 24, round(-0.503) = -1
    layer = _IntLayer.build(w, np.array([-1e-20, 0.5, 0.0], np.float32), transposed=False, stride=1)
    assert layer.shift.tolist() == [15, 24, 24]
    assert layer.weight[0, 0, 0, :2].tolist() == [24576, 0] and layer.weight[1, 0, 0, 0] == -1
    assert layer.weight[0, 1, 1, 1] == float(np.float16(-0.0123)) * 2**15  # exact: fp16 has 11 bits
    assert layer.bias.tolist() == [0, 2**35, 0]  # round(b * 2**(12 + e_c))
    with pytest.raises(ValueError, match="below 2"):
        _IntLayer.build(w * np.float32(2**16), np.zeros(3, np.float32), transposed=False, stride=1)
