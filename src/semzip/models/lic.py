"""Learned image codecs (LIC) behind one interface: ``compress(image) -> (streams, shape)``, ``decompress``.

Two backends:

* :class:`TinyHyperprior`: the project's own small mean-scale hyperprior (Ballé et al. 2018, Minnen et al.
  2018 without the context model), trained by ``semzip train-lic`` on a few dozen offline photos. It is a
  *tiny project-trained model*, not a published one, and its bitstreams are written with semzip's own
  entropy layer (:mod:`semzip.entropy`) under the determinism rules below.
* :class:`CompressAILIC`: every image model of CompressAI's zoo (``bmshj2018-factorized``,
  ``bmshj2018-hyperprior``, ``mbt2018-mean``, ``mbt2018``, ``cheng2020-anchor``, ``cheng2020-attn``) by name and
  quality, or a local checkpoint of one, coded by CompressAI's own entropy coder with its stored CDF tables.

Determinism of :class:`TinyHyperprior` streams
----------------------------------------------
* ``z`` (the hyper-latent) is coded with per-channel integer :class:`~semzip.entropy.CategoricalModel`
  tables computed once from the learned factorized density (at export) and stored *as integers* in the
  weights file; loading never recomputes them. Values outside a channel's table range are clamped (both
  encoder and decoder then see the clamped ``z_hat``, so this costs quality only, never sync).
* ``y`` residuals ``round(y - mu)`` are coded with a :class:`~semzip.entropy.QuantizedGaussianTable` (the
  default grid: a stored integer table, no libm) at per-symbol *scale indices* from the hyper-synthesis.
  Stream version 2 (written by default) runs it integer-exact (:class:`IntHyperSynthesis`: fixed-point
  weights and activations, exact integer sums, integer thresholds instead of softplus), so ``mu`` (Q12),
  the indices and ``y_hat = r + mu`` are the same integers on every machine; only the pixel synthesis
  ``g_s`` is float. Version 1 (legacy, still decoded) ran the float32 h_s in :func:`deterministic_mode`.
  The version is the first byte of the :class:`LICShape` record.
* The y stream starts with a CRC32 of (model fingerprint, scale indices; for version 2 also the version and
  mu): a corrupt z stream, another model, or (version 1) a float difference on another machine fails loudly
  instead of returning noise.

Streams: ``[y_stream, z_stream]`` (CompressAI's order). ``shape`` is a :class:`LICShape` with the original
and coded sizes (``scale < 1`` downsamples before coding; the decoder upsamples back) and the model
fingerprint. ``LICShape.to_bytes()`` is a compact binary form (~14 bytes) for containers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semzip.cache import cache_root
from semzip.errors import (
    EntropyDecodeError,
    InvalidInputError,
    MissingDependencyError,
    MissingModelError,
    ModelMismatchError,
    ResourceLimitError,
    SemzipError,
)
from semzip.models.registry import ModelRegistry, locate

TINY_NAME = "semzip-tiny-hyperprior"
"""Name of the project's own model family (never to be confused with a published model)."""
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "lic-tiny.safetensors"
MAX_CODED_PIXELS = 100_000_000
Z_PRECISION = 16
Z_MAX_HALF_RANGE = 64
STREAM_VERSION = 2
"""LIC stream version written by default: 2 = integer-exact hyper-synthesis (:class:`IntHyperSynthesis`)."""
LEGACY_STREAM_VERSION = 1
"""Version 1 = float32 hyper-synthesis in :func:`deterministic_mode` (still decoded; written on request)."""
STREAM_VERSIONS = (LEGACY_STREAM_VERSION, STREAM_VERSION)
PAD = 64  # total downsampling of g_a (16) times h_a (4)
COMPRESSAI_QUALITIES = {
    "bmshj2018-factorized": 8,
    "bmshj2018-hyperprior": 8,
    "mbt2018-mean": 8,
    "mbt2018": 8,
    "cheng2020-anchor": 6,
    "cheng2020-attn": 6,
}
"""CompressAI's image architectures that have zoo weights, with their highest quality (levels start at 1)."""
COMPRESSAI_ARCHS = tuple(COMPRESSAI_QUALITIES)
_COMPRESSAI_LATENT_STEP = {"bmshj2018-factorized": 16}
"""Downsampling of the last coded latent (the string shape CompressAI's decompress wants); 64 for the rest."""

__all__ = [
    "COMPRESSAI_ARCHS",
    "COMPRESSAI_QUALITIES",
    "DEFAULT_WEIGHTS",
    "LEGACY_STREAM_VERSION",
    "LIC_MODELS",
    "STREAM_VERSION",
    "TINY_NAME",
    "CompressAILIC",
    "IntHyperSynthesis",
    "LICIntegers",
    "LICShape",
    "LearnedImageCodec",
    "TinyHyperprior",
    "default_weights_path",
    "deterministic_mode",
    "integer_digest",
    "known_lics",
    "load_lic",
    "zoo_cached",
]


def _torch() -> Any:
    from semzip._optional import require

    return require("torch", "torch", "learned image codecs")


# ------------------------------------------------------------------------------------------------ interface


@dataclass(frozen=True)
class LICShape:
    """What a decoder needs besides the streams: original size, coded size, model fingerprint, and the
    stream version (its first byte): 2 = integer hyper-synthesis, 1 = legacy float32 hyper-synthesis."""

    height: int
    width: int
    coded_height: int
    coded_width: int
    model: str | None = None
    version: int = STREAM_VERSION

    def __post_init__(self) -> None:
        if self.version not in STREAM_VERSIONS:
            raise InvalidInputError(f"LIC stream version must be one of {STREAM_VERSIONS}, got {self.version!r}")

    def to_bytes(self) -> bytes:
        """Version byte, four varints, flag + 8-byte fingerprint (hex) when ``model`` is set."""
        out = bytearray([self.version])
        for v in (self.height, self.width, self.coded_height, self.coded_width):
            while v >= 0x80:
                out.append((v & 0x7F) | 0x80)
                v >>= 7
            out.append(v)
        if self.model:
            out.append(1)
            out += bytes.fromhex(self.model)
        else:
            out.append(0)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> LICShape:
        """Inverse of :meth:`to_bytes`; malformed input raises :class:`EntropyDecodeError`."""
        data = bytes(data)
        if not data or data[0] not in STREAM_VERSIONS:
            raise EntropyDecodeError("LIC shape record: empty or unknown version (written by a newer semzip?)")
        pos, vals = 1, []
        for _ in range(4):
            v, shift = 0, 0
            while True:
                if pos >= len(data) or shift > 35:
                    raise EntropyDecodeError("LIC shape record: truncated")
                b = data[pos]
                pos += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            vals.append(v)
        if pos >= len(data):
            raise EntropyDecodeError("LIC shape record: truncated")
        flag, pos = data[pos], pos + 1
        model = None
        if flag == 1:
            if len(data) - pos != 8:
                raise EntropyDecodeError("LIC shape record: bad fingerprint length")
            model = data[pos:].hex()
        elif flag != 0 or pos != len(data):
            raise EntropyDecodeError("LIC shape record: trailing or invalid bytes")
        return cls(*vals, model=model, version=data[0])


class LearnedImageCodec:
    """A learned image codec: ``compress`` an RGB uint8 image to byte streams and back."""

    name: str = ""
    quality: int | float | str | None = None
    # largest image (original or coded size) a stream may declare; set lower on an instance to bound
    # decode memory for untrusted streams (the tiny LIC needs about 1 KB per coded pixel while decoding)
    max_pixels: int = MAX_CODED_PIXELS

    @property
    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def compress(self, image: np.ndarray, scale: float = 1.0) -> tuple[list[bytes], LICShape]:
        """Code ``image`` (H, W, 3 uint8); ``scale`` < 1 downsamples first (a rate knob)."""
        raise NotImplementedError

    def decompress(self, streams: list[bytes], shape: LICShape) -> np.ndarray:
        """Decode streams from :meth:`compress` back to an (H, W, 3) uint8 image of the original size."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, quality={self.quality!r}, fp={self.fingerprint})"


def _check_image(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise InvalidInputError(
            f"image must be an (H, W, 3) uint8 array, got shape {a.shape} dtype {a.dtype}"
        )
    return np.ascontiguousarray(a)


def _coded_size(h: int, w: int, scale: Any) -> tuple[int, int]:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) or not 0 < scale <= 1:
        raise InvalidInputError(f"scale must be a number in (0, 1], got {scale!r}")
    return max(1, round(h * float(scale))), max(1, round(w * float(scale)))


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Deterministic Pillow resize of an RGB uint8 image (Lanczos down, bicubic up)."""
    if image.shape[:2] == (h, w):
        return image
    down = h * w < image.shape[0] * image.shape[1]
    method = Image.Resampling.LANCZOS if down else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize((w, h), method), dtype=np.uint8)


def _check_shape(shape: Any, max_pixels: int = MAX_CODED_PIXELS) -> LICShape:
    if isinstance(shape, (bytes, bytearray, memoryview)):
        shape = LICShape.from_bytes(bytes(shape))
    if not isinstance(shape, LICShape):
        raise InvalidInputError(f"shape must be a LICShape (or its bytes), got {type(shape).__name__}")
    for v in (shape.height, shape.width, shape.coded_height, shape.coded_width):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise EntropyDecodeError(f"LIC shape has an invalid size: {shape}")
    for px in (shape.height * shape.width, shape.coded_height * shape.coded_width):
        if px > max_pixels:
            raise ResourceLimitError(
                f"LIC shape declares {px} pixels, above the limit of {max_pixels} (the codec's max_pixels)"
            )
    return shape


def _check_streams(streams: Any, n: int) -> list[bytes]:
    if not isinstance(streams, (list, tuple)) or len(streams) != n:
        raise InvalidInputError(f"expected a list of {n} byte streams, got {type(streams).__name__}")
    out = []
    for s in streams:
        if not isinstance(s, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"streams must be bytes, got {type(s).__name__}")
        out.append(bytes(s))
    return out


# ------------------------------------------------------------------------------------------ determinism


@contextmanager
def deterministic_mode() -> Iterator[None]:
    """The mode the legacy (version-1) float hyper-synthesis runs in on both sides: CPU fp32, 1 thread, no oneDNN."""
    torch = _torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # oneDNN's TF32 notice when flags are set
            flags = torch.backends.mkldnn.flags(enabled=False)
            flags.__enter__()
        try:
            with torch.no_grad():
                yield
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                flags.__exit__(None, None, None)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------- torch modules


def _build_modules() -> dict[str, Any]:
    """Torch module classes, defined lazily so that importing this module does not import torch."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class GDN(nn.Module):
        """Generalized divisive normalization (Ballé 2016); ``inverse`` multiplies instead of dividing.

        Non-negativity by squaring: beta = beta_p^2 + 1e-6, gamma = gamma_p^2.
        """

        def __init__(self, channels: int, inverse: bool = False) -> None:
            super().__init__()
            self.inverse = inverse
            self.beta = nn.Parameter(torch.ones(channels))
            self.gamma = nn.Parameter(torch.eye(channels) * 0.1**0.5)

        def forward(self, x):
            c = x.shape[1]
            norm = F.conv2d(x * x, (self.gamma**2).view(c, c, 1, 1), self.beta**2 + 1e-6)
            return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)

    class FactorizedDensity(nn.Module):
        """Ballé 2018's per-channel learned CDF (monotone MLP, filters 3-3-3), for the hyper-latent z."""

        def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
            super().__init__()
            dims = (1, *filters, 1)
            scale = init_scale ** (1 / (len(filters) + 1))
            self.matrices = nn.ParameterList()
            self.biases = nn.ParameterList()
            self.factors = nn.ParameterList()
            for i in range(len(filters) + 1):
                init = float(np.log(np.expm1(1 / scale / dims[i + 1])))
                self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
                self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
                if i < len(filters):
                    self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

        def logits_cdf(self, x):  # x: (C, 1, n)
            for i, m in enumerate(self.matrices):
                x = torch.matmul(F.softplus(m), x) + self.biases[i]
                if i < len(self.factors):
                    x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
            return x

        def likelihood(self, z):  # z: (B, C, H, W) -> same shape
            b, c, h, w = z.shape
            v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
            lower = self.logits_cdf(v - 0.5)
            upper = self.logits_cdf(v + 0.5)
            sign = -torch.sign(lower + upper).detach()
            p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
            return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def conv(cin: int, cout: int, k: int = 5, s: int = 2):
        return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2)

    def deconv(cin: int, cout: int, k: int = 5, s: int = 2):
        return nn.ConvTranspose2d(cin, cout, k, stride=s, padding=k // 2, output_padding=s - 1)

    class HyperpriorNet(nn.Module):
        """Mean-scale hyperprior: g_a/g_s with GDN, h_a/h_s with leaky ReLU, factorized density for z."""

        def __init__(self, N: int = 48, M: int = 64, Nh: int = 48) -> None:
            super().__init__()
            self.N, self.M, self.Nh = N, M, Nh
            self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
            self.g_s = nn.Sequential(
                deconv(M, N), GDN(N, True), deconv(N, N), GDN(N, True), deconv(N, N), GDN(N, True),
                deconv(N, 3),
            )
            self.h_a = nn.Sequential(
                conv(M, Nh, 3, 1), nn.LeakyReLU(), conv(Nh, Nh), nn.LeakyReLU(), conv(Nh, Nh)
            )
            self.h_s = nn.Sequential(
                deconv(Nh, Nh), nn.LeakyReLU(), deconv(Nh, Nh * 3 // 2), nn.LeakyReLU(),
                conv(Nh * 3 // 2, 2 * M, 3, 1),
            )
            self.density = FactorizedDensity(Nh)

        def hyper(self, z_hat):
            """(mu, sigma) of y from the quantized hyper-latent; sigma >= 0.11 (the table's smallest scale)."""
            mu, raw = self.h_s(z_hat).chunk(2, dim=1)
            return mu, 0.11 + F.softplus(raw)

        def forward(self, x, noise: bool = True):
            """Training pass on x in [0, 1]: reconstruction and likelihoods of y and z (noise proxy)."""
            y = self.g_a(x)
            z = self.h_a(y)
            z_t = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noise else torch.round(z)
            mu, sigma = self.hyper(z_t)
            if noise:
                y_t = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            else:
                y_t = torch.round(y - mu) + mu
            # Distortion through a straight-through rounding (Minnen & Singh 2020); rate on the noisy proxy.
            y_st = y + (torch.round(y - mu) + mu - y).detach()
            v = torch.abs(y_t - mu)
            normal = torch.distributions.Normal(0.0, 1.0)
            p_y = normal.cdf((0.5 - v) / sigma) - normal.cdf((-0.5 - v) / sigma)
            p_z = self.density.likelihood(z_t)
            x_hat = self.g_s(y_st)
            return x_hat, p_y.clamp_min(1e-9), p_z.clamp_min(1e-9)

    return {"GDN": GDN, "FactorizedDensity": FactorizedDensity, "HyperpriorNet": HyperpriorNet}


_MODULES: dict[str, Any] | None = None


def modules() -> dict[str, Any]:
    """The torch module classes (built once, on first use)."""
    global _MODULES
    if _MODULES is None:
        _MODULES = _build_modules()
    return _MODULES


def build_net(N: int = 48, M: int = 64, Nh: int = 48, seed: int | None = None) -> Any:
    """A fresh randomly initialised :class:`HyperpriorNet` (``seed`` makes it reproducible)."""
    torch = _torch()
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return modules()["HyperpriorNet"](N, M, Nh)
    return modules()["HyperpriorNet"](N, M, Nh)


def z_tables(net: Any, max_half_range: int = Z_MAX_HALF_RANGE, precision: int = Z_PRECISION) -> dict[str, Any]:
    """Integerise the learned z density once: per channel an offset and a frequency table.

    Each channel's support is the integer range holding all but ~1e-7 of the mass (at most
    ``2 * max_half_range + 1`` values); the end bins absorb the tails. Probabilities (float64) become
    counts ``floor(p * 2**32)`` and go through :func:`semzip.entropy.integerize`.
    """
    torch = _torch()
    from semzip.entropy import integerize

    c = net.Nh
    grid = torch.arange(-max_half_range, max_half_range + 1, dtype=torch.float64)
    with torch.no_grad():
        dens = net.density.double()
        x = grid.view(1, 1, -1).expand(c, 1, -1)
        upper = torch.sigmoid(dens.logits_cdf(x + 0.5)).squeeze(1)  # (C, K)
        net.density.float()
    upper = upper.numpy()
    offsets = np.zeros(c, dtype=np.int32)
    lengths = np.zeros(c, dtype=np.int32)
    tables = np.zeros((c, grid.numel()), dtype=np.int32)
    g = grid.numpy().astype(np.int64)
    for ch in range(c):
        cdf = upper[ch]
        lo = int(np.searchsorted(cdf, 1e-7 / 2))
        hi = int(np.searchsorted(cdf, 1 - 1e-7 / 2))
        hi = min(max(hi, lo), len(g) - 1)
        pmf = np.diff(np.concatenate([[0.0], cdf[lo:hi + 1]]))
        pmf[0] = cdf[lo]
        pmf[-1] = 1.0 - (cdf[hi - 1] if hi > lo else 0.0)
        counts = np.floor(np.clip(pmf, 0, 1) * 2.0**32).astype(np.int64)
        freqs = integerize(counts, precision)
        offsets[ch], lengths[ch] = g[lo], freqs.size
        tables[ch, : freqs.size] = freqs.astype(np.int32)
    return {"z_offsets": offsets, "z_lengths": lengths, "z_freqs": tables[:, : int(lengths.max())].copy()}


# -------------------------------------------------------------------------- integer-exact hyper-synthesis

HS_FRAC_BITS = 12
"""Activations (and mu, and the raw scale output) of the integer h_s are fixed point Q12: value = a / 4096."""
HS_ACT_MAX = 2**22 - 1
"""Every activation is saturated to ``|a| <= HS_ACT_MAX`` (about +-1024 in real units)."""
HS_WEIGHT_BITS = 15
"""Per output channel, weights are integers ``|q| <= 2**15`` times a power-of-two scale ``2**-e_c``."""
HS_SHIFT_MAX = 24
"""``e_c <= 24``: a channel is never stored finer than Q24 (every fp16 weight is exact in Q24)."""
HS_PARAM_LIMIT = 2**15
"""Weights and biases must satisfy ``|w| < 2**15`` (fp16 ones always do up to 32768): keeps the bounds."""
SIGMA_MIN = "0.11"
"""sigma = 0.11 + softplus(raw); the integer thresholds use this exact decimal."""


def softplus_thresholds(boundaries: Any, frac_bits: int = HS_FRAC_BITS, sigma_min: str = SIGMA_MIN) -> np.ndarray:
    """Integer thresholds ``t_k`` on the raw Q``frac_bits`` output: scale index = ``#{k : t_k <= raw}``.

    ``sigma >= b_k`` with ``sigma = sigma_min + softplus(raw)`` is ``raw >= log(expm1(b_k - sigma_min))``,
    so ``t_k = ceil(2**frac_bits * log(expm1(b_k - sigma_min)))`` (``-2**62`` when ``b_k <= sigma_min``).
    Exact recipe: each float64 boundary is converted exactly to a ``Decimal``, and ``exp``/``ln`` run in
    Python's ``decimal`` at 60 digits (correctly rounded, pure integer software: the same digits on every
    machine); a value within ``1e-30`` of an integer, which would make the ceiling ambiguous, raises.
    """
    import decimal

    out = []
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        lo = decimal.Decimal(sigma_min)
        scale = decimal.Decimal(2) ** frac_bits
        for b in np.asarray(boundaries, dtype=np.float64).tolist():
            c = decimal.Decimal(b) - lo
            if c <= 0:
                out.append(-(2**62))
                continue
            g = (c.exp() - 1).ln() * scale
            t = int(g.to_integral_value(rounding=decimal.ROUND_CEILING))
            if abs(g - g.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)) < decimal.Decimal("1e-30"):
                raise ValueError(f"scale threshold {g} is too close to an integer to round safely")
            out.append(t)
    t = np.asarray(out, dtype=np.int64)
    if (np.diff(t) < 0).any():
        raise ValueError("scale thresholds are not monotone (boundaries not increasing)")
    return t


def _to_fraction(a: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(m, e)`` of float16/float32 values (``m * 2**e``); float16 goes through float32 exactly."""
    from semzip.entropy.fixedpoint import f32_to_fraction

    a = np.asarray(a)
    if a.dtype not in (np.float16, np.float32):
        raise ValueError(f"h_s parameters must be float16 or float32, got {a.dtype}")
    return f32_to_fraction(np.ascontiguousarray(a.astype(np.float32)).view(np.uint32))


def _valid_conv(x: np.ndarray, w: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Exact integer 'valid' correlation of int64 ``x`` (C, H, W) with integer-valued float64 ``w``
    (Cout, C*kh*kw): im2col, then a float64 matrix product whose every partial sum is an integer below
    ``2**53`` (the caller's bounds), so BLAS blocking, threads, SIMD width or FMA cannot change it."""
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # (C, Ho, Wo, kh, kw)
    ho, wo = win.shape[1], win.shape[2]
    out = np.empty((w.shape[0], ho, wo), dtype=np.int64)
    rows = max(1, (1 << 22) // max(1, w.shape[1] * wo))  # at most ~32 MB of columns per product
    for r0 in range(0, ho, rows):
        r = min(rows, ho - r0)
        cols = np.empty((x.shape[0], kh, kw, r, wo), dtype=np.float64)
        cols[...] = win[:, r0 : r0 + r].transpose(0, 3, 4, 1, 2)
        out[:, r0 : r0 + r] = (w @ cols.reshape(w.shape[1], r * wo)).astype(np.int64).reshape(-1, r, wo)
    return out


@dataclass(frozen=True)
class _IntLayer:
    """One convolution of the integer h_s, held as a plain correlation (transposed ones rewritten).

    A transposed convolution (stride ``d``) is a correlation of the ``d``-fold zero-inserted input with the
    flipped kernel; it runs as ``d*d`` output phases, each a small correlation of the input itself with the
    kernel taps that meet real samples (``phases``), which skips the inserted zeros.
    """

    weight: np.ndarray  # int64 (Cout, Cin, k, k): q = round(w * 2**shift), |q| <= 2**HS_WEIGHT_BITS
    bias: np.ndarray  # int64 (Cout,): round(b * 2**(HS_FRAC_BITS + shift)), the accumulator's units
    shift: np.ndarray  # int64 (Cout,): e_c in [0, HS_SHIFT_MAX]
    dilate: int  # the stride of a transposed convolution (input zero-insertion); 1 for a convolution
    pad: tuple[int, int]  # zero padding before / after of the (zero-inserted) input, both spatial axes
    phases: tuple[tuple[int, int, int, int, int, int, np.ndarray], ...]  # (a, b, row0, col0, kh, kw, w_f64)

    @classmethod
    def build(cls, weight: Any, bias: Any, transposed: bool, stride: int) -> _IntLayer:
        from semzip.entropy.fixedpoint import bit_length, rshift_round

        w = np.asarray(weight)
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise ValueError(f"h_s weight of shape {w.shape} is not a square 2-D kernel")
        k = int(w.shape[-1])
        if transposed:  # ConvTranspose2d(k, stride, padding=k//2, output_padding=stride-1) as a correlation
            w = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
            p = k - 1 - k // 2
            pad, dilate = (p, p + stride - 1), stride
        else:
            if stride != 1:
                raise ValueError("strided convolutions are not part of h_s")
            pad, dilate = (k // 2, k // 2), 1
        cout, cin = w.shape[:2]
        m, e = _to_fraction(w.reshape(cout, -1))
        mb, eb = _to_fraction(np.asarray(bias).reshape(-1))
        if mb.shape != (cout,):
            raise ValueError(f"h_s bias has {mb.size} values for {cout} channels")
        # |value| < 2**(bit_length(|m|) + e): the exponent that decides each channel's power-of-two scale
        expo = np.where(m != 0, bit_length(np.abs(m)) + e, -(2**20))
        expo_b = np.where(mb != 0, bit_length(np.abs(mb)) + eb, -(2**20))
        limit = HS_PARAM_LIMIT.bit_length() - 1
        if int(expo.max(initial=-(2**20))) > limit or int(expo_b.max(initial=-(2**20))) > limit:
            raise ValueError(f"h_s parameters must be below 2**{limit} in magnitude")
        shift = np.clip(HS_WEIGHT_BITS - expo.max(axis=1), 0, HS_SHIFT_MAX).astype(np.int64)
        # round(m * 2**(e + e_c)); |m| < 2**24, so shifts beyond 62 (rshift_round's range) round to 0 anyway
        q = rshift_round(m, np.minimum(-(e + shift[:, None]), 62)).reshape(cout, cin, k, k)
        qb = rshift_round(mb, np.minimum(-(eb + HS_FRAC_BITS + shift), 62))
        if np.abs(q).max(initial=0) > 2**HS_WEIGHT_BITS:  # pragma: no cover - guaranteed by the shift
            raise AssertionError("integer h_s weight out of range")
        if cin * k * k * 2**HS_WEIGHT_BITS * HS_ACT_MAX >= 2**53:
            raise ValueError(f"h_s layer with {cin * k * k} taps is too wide for exact float64 sums")
        phases = []
        for a in range(dilate):
            us = [u for u in range(k) if (a + u - pad[0]) % dilate == 0]
            for b in range(dilate):
                vs = [v for v in range(k) if (b + v - pad[0]) % dilate == 0]
                if us and vs:
                    sub = q[:, :, us][:, :, :, vs].reshape(cout, -1).astype(np.float64)
                    phases.append((a, b, (a + us[0] - pad[0]) // dilate, (b + vs[0] - pad[0]) // dilate,
                                   len(us), len(vs), sub))
        return cls(q, qb, shift, dilate, pad, tuple(phases))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Q12 int64 (Cin, H, W) -> Q12 int64 (Cout, H', W'), saturated to ``+-HS_ACT_MAX``."""
        from semzip.entropy.fixedpoint import rshift_round, saturate

        if np.abs(x).max(initial=0) > HS_ACT_MAX:  # the bound that makes the float64 sums exact
            raise AssertionError("integer h_s activation out of range")
        k, d = self.weight.shape[-1], self.dilate
        h, w = x.shape[1:]
        ho = (h - 1) * d + 1 + sum(self.pad) - k + 1
        wo = (w - 1) * d + 1 + sum(self.pad) - k + 1
        acc = np.zeros((self.weight.shape[0], ho, wo), dtype=np.int64)
        g = k  # margin of zeros: every phase's window start (row0, col0) lies within [-k, k]
        xp = np.pad(x, ((0, 0), (g, g), (g, g)))
        for a, b, r0, c0, kh, kw, wsub in self.phases:
            n_r, n_c = -(-(ho - a) // d), -(-(wo - b) // d)  # output rows/cols of this phase
            src = xp[:, g + r0 : g + r0 + n_r + kh - 1, g + c0 : g + c0 + n_c + kw - 1]
            acc[:, a::d, b::d] = _valid_conv(src, wsub, kh, kw)
        acc += self.bias[:, None, None]  # |sum| < 2**53, |bias| < 2**51: no int64 overflow
        return saturate(rshift_round(acc, self.shift[:, None, None]), HS_ACT_MAX)


_BLAS: Any = None


@contextmanager
def _blas_one_thread() -> Iterator[None]:
    """Keep numpy's BLAS on one thread while the integer h_s runs, where ``threadpoolctl`` is installed.

    Speed only (the sums are exact in any split): BLAS worker threads keep spinning after a product and then
    compete with torch's threads in ``g_s`` (measured: about +60 ms per Kodak decode on 2 cores); one
    thread does the h_s products of a Kodak image in about 12 ms.
    """
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except Exception:  # noqa: BLE001 - absent or unable to inspect this process: run unlimited
            _BLAS = False
    if _BLAS is False:
        yield
        return
    with _BLAS.limit(limits=1, user_api="blas"):
        yield


def _leaky_relu(x: np.ndarray) -> np.ndarray:
    """LeakyReLU(0.01) in fixed point: negative values become ``round(x / 100)`` (0.01 = 1/100 exactly)."""
    from semzip.entropy.fixedpoint import div_round

    return np.where(x < 0, div_round(x, 100), x)


class IntHyperSynthesis:
    """Integer-exact hyper-synthesis ``h_s``: ``z_hat`` (integers) -> ``mu`` (Q12) and scale indices.

    Pure numpy int64 and exact float64 sums; no torch, no libm on the path. From the model's float
    parameters (fp16 values held exactly in fp32), per output channel ``e_c = clip(15 - E, 0, 24)`` with
    ``E`` the largest binary exponent of the channel's weights (``|w| < 2**E``), ``q = round(w * 2**e_c)``
    (``|q| <= 2**15``), ``bias = round(b * 2**(12 + e_c))``: all exact integer conversions of the float
    bit patterns. Each layer: Q12 input (``z_hat * 2**12`` for the first), convolution as an exact integer
    sum (float64 products of integers, :func:`_valid_conv`: ``K * 2**15 * (2**22 - 1) < 2**53``, K <= 1200
    taps here), plus bias, ``rshift_round`` by ``e_c`` back to Q12, saturation to ``+-(2**22 - 1)``; leaky
    ReLU as ``round(x / 100)`` for negatives. The last layer gives ``mu`` (Q12) and ``raw`` (Q12); the scale
    index is ``#{k : t_k <= raw}`` with the thresholds of :func:`softplus_thresholds` (no softplus is ever
    evaluated). The architecture is :class:`HyperpriorNet`'s ``h_s``: deconv 5x5/2, leaky ReLU,
    deconv 5x5/2, leaky ReLU, conv 3x3.
    """

    def __init__(self, state: dict[str, Any], boundaries: Any) -> None:
        """``state``: ``h_s``'s parameters by key (``0.weight`` ... ``4.bias``) as float16/float32 numpy arrays."""
        try:
            self.layers = [
                _IntLayer.build(state["0.weight"], state["0.bias"], transposed=True, stride=2),
                _IntLayer.build(state["2.weight"], state["2.bias"], transposed=True, stride=2),
                _IntLayer.build(state["4.weight"], state["4.bias"], transposed=False, stride=1),
            ]
        except KeyError as exc:
            raise ValueError(f"h_s parameter {exc} is missing") from None
        cin = [layer.weight.shape[1] for layer in self.layers]
        cout = [layer.weight.shape[0] for layer in self.layers]
        if cin[1:] != cout[:-1] or cout[-1] % 2:
            raise ValueError(f"h_s channels do not chain: in {cin}, out {cout}")
        self.in_channels, self.M = cin[0], cout[-1] // 2
        self.thresholds = softplus_thresholds(boundaries)

    def __call__(self, z_hat: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(mu_q, idx)`` for integer ``z_hat`` (Nh, h, w): ``mu = mu_q / 2**12`` (int64), indices int64."""
        from semzip.entropy.fixedpoint import saturate

        z = np.asarray(z_hat)
        if z.dtype.kind not in "iu" or z.ndim != 3 or z.shape[0] != self.in_channels:
            raise InvalidInputError(f"z_hat must be integers of shape ({self.in_channels}, h, w)")
        x = saturate(np.left_shift(saturate(z, 2**10), HS_FRAC_BITS), HS_ACT_MAX)  # Q12 input
        with _blas_one_thread():
            x = _leaky_relu(self.layers[0](x))
            x = _leaky_relu(self.layers[1](x))
            x = self.layers[2](x)
        mu_q, raw_q = x[: self.M], x[self.M :]
        return mu_q, np.searchsorted(self.thresholds, raw_q, side="right").astype(np.int64)


@dataclass(frozen=True)
class LICIntegers:
    """What a TinyHyperprior stream decodes to before the pixel synthesis ``g_s`` (int64 arrays, (C, h, w)).

    ``mu``: Q12 integers for version 2 (value ``mu / 4096``), float32 for legacy version 1;
    ``y_hat_q``: ``residuals * 4096 + mu`` (Q12) for version 2, ``None`` for version 1.
    """

    version: int
    z_hat: np.ndarray
    scale_idx: np.ndarray
    residuals: np.ndarray
    mu: np.ndarray
    y_hat_q: np.ndarray | None

    def y_hat_float(self) -> np.ndarray:
        """``y_hat`` as the float32 input of ``g_s`` (``y_hat_q / 4096``, or ``residuals + mu`` for v1)."""
        if self.y_hat_q is not None:
            return (self.y_hat_q.astype(np.float64) / 2**HS_FRAC_BITS).astype(np.float32)
        return (self.residuals + self.mu).astype(np.float32)

    def digest(self) -> dict[str, Any]:
        """SHA-256 of each array's little-endian bytes (int64; v1's mu and y_hat as float32), plus the shape."""
        def sha(a: np.ndarray, dt: str) -> str:
            return hashlib.sha256(np.ascontiguousarray(a).astype(dt).tobytes()).hexdigest()

        v2 = self.version == STREAM_VERSION
        return {
            "version": self.version,
            "shape": list(self.scale_idx.shape),
            "z_hat": sha(self.z_hat, "<i8"),
            "scale_idx": sha(self.scale_idx, "<i8"),
            "residuals": sha(self.residuals, "<i8"),
            "mu": sha(self.mu, "<i8" if v2 else "<f4"),
            "y_hat": sha(self.y_hat_q if v2 else self.y_hat_float(), "<i8" if v2 else "<f4"),
        }


def integer_digest(codec: TinyHyperprior, streams: list[bytes], shape: LICShape | bytes) -> dict[str, Any]:
    """SHA-256 digests of what a TinyHyperprior stream decodes to before ``g_s`` (z_hat, scale indices,
    residuals, mu, y_hat in Q12): identical on every machine for version-2 streams (golden-file tests)."""
    return codec.decode_integers(streams, shape).digest()


# ------------------------------------------------------------------------------------------------ backends


def default_weights_path() -> Path:
    """Where the shipped default lives, else where the build script put it in the user cache."""
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    return cache_root() / "lic-tiny.safetensors"


class TinyHyperprior(LearnedImageCodec):
    """The project's own small mean-scale hyperprior, coded with semzip's entropy layer (see module doc)."""

    def __init__(self, net: Any, tables: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                 quality: int | str = 1) -> None:
        torch = _torch()
        from semzip.entropy import CategoricalModel, QuantizedGaussianTable
        from semzip.models.fingerprint import fingerprint_state_dict

        self._torch = torch
        self.net = net.to("cpu").float().eval().requires_grad_(False)
        self.meta = dict(meta or {})
        self.quality = quality
        self.name = TINY_NAME
        t = tables if tables is not None else z_tables(self.net)
        self.z_offsets = np.asarray(t["z_offsets"], dtype=np.int64)
        self.z_lengths = np.asarray(t["z_lengths"], dtype=np.int64)
        freqs = np.asarray(t["z_freqs"], dtype=np.int64)
        if not (len(self.z_offsets) == len(self.z_lengths) == freqs.shape[0] == self.net.Nh):
            raise ModelMismatchError("LIC z tables do not match the model's hyper-latent channels")
        try:
            self.z_models = [
                CategoricalModel(freqs[c, : self.z_lengths[c]].astype(np.uint32), Z_PRECISION)
                for c in range(self.net.Nh)
            ]
        except SemzipError as exc:
            raise ModelMismatchError(f"LIC z tables are invalid: {exc}") from None
        self.table = QuantizedGaussianTable()
        self._int_hyper: IntHyperSynthesis | None = None
        state = {k: v for k, v in self.net.state_dict().items()}
        state["z_offsets"] = torch.from_numpy(self.z_offsets.astype(np.int32))
        state["z_lengths"] = torch.from_numpy(self.z_lengths.astype(np.int32))
        state["z_freqs"] = torch.from_numpy(freqs.astype(np.int32))
        h = hashlib.sha256(b"semzip.lic.tiny-hyperprior.v1\x00")
        h.update(fingerprint_state_dict(state).encode())
        h.update(self.table.fingerprint().encode())
        self._fingerprint = h.hexdigest()[:16]

    # -- construction

    @classmethod
    def random(cls, N: int = 16, M: int = 24, Nh: int = 16, seed: int = 0) -> TinyHyperprior:
        """A randomly initialised model (tests, smoke runs): real architecture, meaningless weights."""
        return cls(build_net(N, M, Nh, seed=seed), meta={"trained": "no (random init)", "seed": seed})

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TinyHyperprior:
        """Load weights + integer z tables written by :meth:`save` (safetensors only, never pickle)."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingModelError(
                f"LIC weights not found: {p}. Build the offline default with scripts/build_lic_default.sh "
                "(trains semzip's tiny hyperprior for ~15 min on CPU), or train one with "
                "`semzip train-lic --config configs/lic-tiny.toml`."
            )
        from semzip._optional import require

        st = require("safetensors.torch", "dev", "LIC weights")
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
            state = st.load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types on bad files
            raise MissingModelError(f"{p}: not a readable safetensors file ({exc})") from None
        if meta.get("semzip_model") != TINY_NAME:
            raise ModelMismatchError(f"{p} is not a {TINY_NAME} weights file (metadata {meta.get('semzip_model')!r})")
        try:  # untrusted metadata: sizes are checked before anything is built from them
            cfg = json.loads(meta.get("config", "{}"))
            info = json.loads(meta.get("info", "{}"))
            sizes = [int(cfg.get("N", 48)), int(cfg.get("M", 64)), int(cfg.get("Nh", 48))]
            if not isinstance(info, dict) or not all(1 <= v <= 1024 for v in sizes):
                raise ValueError("sizes outside 1..1024")
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            raise ModelMismatchError(f"{p}: malformed {TINY_NAME} metadata ({exc})") from None
        net = build_net(*sizes)
        tables = {k: state.pop(k).numpy() for k in ("z_offsets", "z_lengths", "z_freqs") if k in state}
        if len(tables) != 3:
            raise ModelMismatchError(f"{p} lacks the integer z tables (z_offsets, z_lengths, z_freqs)")
        try:
            net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        except RuntimeError as exc:
            raise ModelMismatchError(f"{p}: weights do not fit the architecture ({str(exc).splitlines()[0]})") from None
        try:
            return cls(net, tables, meta={**info, "path": str(p)}, quality=info.get("quality", 1))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ModelMismatchError(f"{p}: inconsistent z tables ({exc})") from None

    @classmethod
    def default(cls) -> TinyHyperprior:
        """The offline default model (shipped in the package, else built into the user cache)."""
        return cls.from_file(default_weights_path())

    def save(self, path: str | os.PathLike, info: dict[str, Any] | None = None, dtype: str = "float16") -> Path:
        """Write weights (``dtype``) and the integer z tables to a safetensors file, atomically.

        The model is rebuilt from this file with :meth:`from_file`; float16 storage is exact after load
        (the fp32 model holds the same values), so the fingerprint of the loaded model is stable.
        """
        torch = self._torch
        from safetensors.torch import save as safetensors_bytes

        from semzip.format import atomic_write

        dt = {"float16": torch.float16, "float32": torch.float32}[dtype]
        state = {k: v.detach().to(dt).contiguous() for k, v in self.net.state_dict().items()}
        state["z_offsets"] = torch.from_numpy(self.z_offsets.astype(np.int32))
        state["z_lengths"] = torch.from_numpy(self.z_lengths.astype(np.int32))
        state["z_freqs"] = torch.from_numpy(
            np.stack([np.pad(m.freqs.astype(np.int32), (0, int(self.z_lengths.max()) - m.num_symbols))
                      for m in self.z_models])
        )
        meta = {
            "semzip_model": TINY_NAME,
            "config": json.dumps({"N": self.net.N, "M": self.net.M, "Nh": self.net.Nh}),
            "info": json.dumps({**self.meta, **(info or {})}, default=str),
            "dtype": dtype,
        }
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, safetensors_bytes(state, metadata=meta))  # the same bytes as save_file, never half-written
        return p

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    # -- coding

    def _pad(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[:2]
        return np.pad(x, ((0, -h % PAD), (0, -w % PAD), (0, 0)), mode="edge")

    @property
    def int_hyper(self) -> IntHyperSynthesis:
        """The integer-exact hyper-synthesis of version-2 streams, built on first use from ``h_s``'s weights."""
        ih = self._int_hyper
        if ih is None:
            state = {k: v.detach().cpu().numpy() for k, v in self.net.h_s.state_dict().items()}
            try:
                ih = IntHyperSynthesis(state, self.table.boundaries)
            except ValueError as exc:
                raise ModelMismatchError(f"{self.name}: no integer hyper-synthesis for these weights ({exc})") from None
            self._int_hyper = ih
        return ih

    def _hyper_indices(self, z_hat: np.ndarray, version: int = STREAM_VERSION) -> tuple[np.ndarray, np.ndarray]:
        """mu and scale indices (int64) from integer z_hat: version 2 integer-exact (mu int64 in Q12);
        version 1 the legacy float32 h_s in :func:`deterministic_mode` (mu float32)."""
        if version == STREAM_VERSION:
            return self.int_hyper(z_hat)
        torch = self._torch
        with deterministic_mode():
            mu, sigma = self.net.hyper(torch.from_numpy(z_hat.astype(np.float32))[None])
        mu = mu[0].numpy()
        idx = self.table.scale_index(sigma[0].numpy().astype(np.float64))
        return mu, idx

    def _checksum(self, idx: np.ndarray, mu: np.ndarray, version: int) -> bytes:
        """Version 1: CRC32 of the indices seeded with the fingerprint; version 2 also covers the version
        and mu (Q12), so a stream read under the wrong version fails here."""
        if version == LEGACY_STREAM_VERSION:
            crc = zlib.crc32(bytes.fromhex(self._fingerprint))
            return struct.pack("<I", zlib.crc32(idx.astype(np.uint8).tobytes(), crc))
        crc = zlib.crc32(bytes([version]) + bytes.fromhex(self._fingerprint))
        crc = zlib.crc32(idx.astype(np.uint8).tobytes(), crc)
        return struct.pack("<I", zlib.crc32(mu.astype("<i8").tobytes(), crc))

    def analysis(self, image: np.ndarray) -> np.ndarray:
        """The latent y (M, h, w) of a (padded) uint8 image."""
        torch = self._torch
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            return self.net.g_a(x)[0].numpy()

    def compress(self, image: np.ndarray, scale: float = 1.0, *,
                 version: int = STREAM_VERSION) -> tuple[list[bytes], LICShape]:
        """Code ``image``; returns ``[y_stream, z_stream]`` and the :class:`LICShape`.

        ``version=1`` writes a legacy stream (float32 hyper-synthesis; decodes only where the floats agree):
        for tests and comparisons, not for archives.
        """
        from semzip.entropy import Encoder

        torch = self._torch
        if version not in STREAM_VERSIONS:
            raise InvalidInputError(f"LIC stream version must be one of {STREAM_VERSIONS}, got {version!r}")
        img = _check_image(image)
        h, w = img.shape[:2]
        ch, cw = _coded_size(h, w, scale)
        if ch * cw > MAX_CODED_PIXELS:
            raise ResourceLimitError(f"image of {ch * cw} coded pixels exceeds {MAX_CODED_PIXELS}")
        x = self._pad(_resize(img, ch, cw))
        y = self.analysis(x)
        with torch.no_grad():
            z = self.net.h_a(torch.from_numpy(y)[None])[0].numpy()
        z_sym = np.rint(z).astype(np.int64) - self.z_offsets[:, None, None]
        z_sym = np.clip(z_sym, 0, self.z_lengths[:, None, None] - 1)
        z_hat = z_sym + self.z_offsets[:, None, None]
        ez = Encoder()
        for c in range(self.net.Nh):
            ez.encode_categorical(z_sym[c].ravel(), self.z_models[c])
        mu, idx = self._hyper_indices(z_hat, version)
        mu_real = mu.astype(np.float64) / 2**HS_FRAC_BITS if version == STREAM_VERSION else mu
        resid = np.rint(y - mu_real).astype(np.int64)
        ey = Encoder()
        ey.encode_gaussian(resid.ravel(), idx.ravel(), self.table)
        shape = LICShape(h, w, ch, cw, model=self._fingerprint, version=version)
        return [self._checksum(idx, mu, version) + ey.to_bytes(), ez.to_bytes()], shape

    def decode_integers(self, streams: list[bytes], shape: LICShape | bytes) -> LICIntegers:
        """Entropy-decode ``[y_stream, z_stream]`` up to ``y_hat`` (everything before the float ``g_s``).

        Refuses another model's streams and a desynchronised hyperprior. For version-2 streams every array
        returned is an exact integer function of the bytes: the same on every machine.
        """
        from semzip.entropy import Decoder

        y_bytes, z_bytes = _check_streams(streams, 2)
        shape = _check_shape(shape, self.max_pixels)
        if shape.model is not None and shape.model != self._fingerprint:
            raise ModelMismatchError(
                f"this LIC stream was encoded with model {shape.model}, but {self.name} {self._fingerprint} "
                "was offered; decode with the same weights file"
            )
        if len(y_bytes) < 4:
            raise EntropyDecodeError("LIC y stream is truncated (no scale checksum)")
        hp, wp = shape.coded_height + (-shape.coded_height % PAD), shape.coded_width + (-shape.coded_width % PAD)
        zh, zw = hp // PAD, wp // PAD
        dz = Decoder(z_bytes)
        z_sym = np.stack([dz.decode_categorical(m, zh * zw).reshape(zh, zw) for m in self.z_models])
        dz.finish()
        z_hat = z_sym + self.z_offsets[:, None, None]
        mu, idx = self._hyper_indices(z_hat, shape.version)
        if self._checksum(idx, mu, shape.version) != y_bytes[:4]:
            hint = ("a corrupt stream or another model" if shape.version == STREAM_VERSION else
                    "a corrupt stream, another model, or a float difference across hardware: this is a legacy "
                    "version-1 stream (float hyper-synthesis), decode it on CPU with the torch build that wrote it")
            raise EntropyDecodeError(f"LIC scale-index checksum mismatch ({hint})")
        dy = Decoder(y_bytes[4:])
        resid = dy.decode_gaussian(idx.ravel(), self.table).reshape(idx.shape)
        dy.finish()
        if shape.version == STREAM_VERSION:
            y_q = resid * 2**HS_FRAC_BITS + mu  # |resid| < 2**31, |mu| < 2**22: exact in int64
            return LICIntegers(shape.version, z_hat, idx, resid, mu, y_q)
        return LICIntegers(shape.version, z_hat, idx, resid, mu, None)

    def decompress(self, streams: list[bytes], shape: LICShape | bytes) -> np.ndarray:
        """Decode ``[y_stream, z_stream]``; refuses another model's streams and a desynchronised hyperprior."""
        torch = self._torch
        shape = _check_shape(shape, self.max_pixels)
        ints = self.decode_integers(streams, shape)
        y_hat = torch.from_numpy(ints.y_hat_float())[None]
        with torch.no_grad():
            x = self.net.g_s(y_hat)[0].clamp(0, 1).mul(255).round()
        out = np.nan_to_num(x.permute(1, 2, 0).numpy()).astype(np.uint8)
        out = np.ascontiguousarray(out[: shape.coded_height, : shape.coded_width])
        return _resize(out, shape.height, shape.width)


class CompressAILIC(LearnedImageCodec):
    """A CompressAI model (zoo name + quality, or a local checkpoint), coded by CompressAI's entropy coder.

    Every image architecture of CompressAI's zoo is accepted (:data:`COMPRESSAI_QUALITIES`). Zoo weights are
    read from torch's hub cache, downloaded only with ``allow_download=True``; a ``checkpoint`` is a local
    ``.safetensors`` file or a torch file read with ``weights_only=True`` (never unpickled).

    Entropy tables: the integer CDF tables stored in the weights (``_quantized_cdf``, ``_offset``,
    ``_cdf_length``, ``scale_table``, written by CompressAI's ``update()`` before saving) are used as stored;
    only a file without them gets tables computed here, in float, and ``tables`` says which. The fingerprint
    covers the tables, so a decoder whose computed tables differ refuses the stream instead of desynchronising.
    CompressAI's hyper-synthesis itself runs in float (CompressAI #279): decode on the same kind of hardware.
    """

    def __init__(self, arch: str = "bmshj2018-hyperprior", quality: int = 1,
                 checkpoint: str | os.PathLike | None = None, metric: str = "mse",
                 allow_download: bool = False, device: str = "cpu") -> None:
        if arch not in COMPRESSAI_QUALITIES:
            raise InvalidInputError(f"unknown CompressAI architecture {arch!r}; known: {', '.join(COMPRESSAI_ARCHS)}")
        top = COMPRESSAI_QUALITIES[arch]
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= top:
            raise InvalidInputError(f"{arch} quality must be 1..{top}, got {quality!r}")
        if metric not in ("mse", "ms-ssim"):
            raise InvalidInputError(f"CompressAI zoo metric must be 'mse' or 'ms-ssim', got {metric!r}")
        torch = _torch()
        try:
            import compressai  # noqa: F401
            from compressai.zoo import image_models, load_state_dict
            from compressai.zoo.image import model_architectures
        except Exception as exc:  # noqa: BLE001 - torchvision's broken ops raise RuntimeError, not ImportError
            raise MissingDependencyError(
                f"compressai cannot be imported ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                "install it with pip install 'semzip[lic]' next to a torchvision that matches torch"
            ) from None
        self._torch = torch
        self.arch, self.quality, self.device, self.metric = arch, quality, device, metric
        self.name = f"compressai:{arch}:{quality}" if checkpoint is None else f"compressai:{arch}:{Path(checkpoint).name}"
        if checkpoint is not None:
            state = _load_state(Path(checkpoint).expanduser())
            for key in ("state_dict", "model_state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
            try:
                net = model_architectures[arch].from_state_dict(load_state_dict(_with_table_keys(state, arch)))
            except Exception as exc:  # noqa: BLE001
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise ModelMismatchError(f"{checkpoint}: not a {arch} checkpoint ({first})") from None
        else:
            if not allow_download and not zoo_cached(torch, arch, quality, metric):
                raise MissingModelError(
                    f"CompressAI zoo weights for {arch} quality {quality} ({metric}) are not in torch's hub "
                    f"cache ({Path(torch.hub.get_dir()) / 'checkpoints'}); pass --allow-download "
                    "on a machine with internet, or the checkpoint file instead of the quality"
                )
            try:
                net = image_models[arch](quality=quality, metric=metric, pretrained=True, progress=False)
            except Exception as exc:  # noqa: BLE001 - network/cache errors
                raise MissingModelError(f"cannot load CompressAI {arch} q{quality}: {exc}") from None
        net = net.eval().to(device)
        # Stored integer tables are kept as they are; only missing ones are computed (force=False).
        self.tables = "stored" if _has_cdf_tables(net) else "computed"
        net.update(force=False)
        self.net = net
        self._step = _COMPRESSAI_LATENT_STEP.get(arch, 64)
        from semzip.models.fingerprint import fingerprint_state_dict

        self._fingerprint = fingerprint_state_dict(net.state_dict())

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def compress(self, image: np.ndarray, scale: float = 1.0) -> tuple[list[bytes], LICShape]:
        torch = self._torch
        img = _check_image(image)
        h, w = img.shape[:2]
        ch, cw = _coded_size(h, w, scale)
        x = np.pad(_resize(img, ch, cw), ((0, -ch % PAD), (0, -cw % PAD), (0, 0)), mode="edge")
        t = torch.from_numpy(x).permute(2, 0, 1)[None].float().div(255).to(self.device)
        with torch.no_grad():
            out = self.net.compress(t)
        streams = [s[0] for s in out["strings"]]  # one image: one string per latent
        # version 1: CompressAI streams are not semzip's hyper-synthesis; their shape bytes stay as they were
        return streams, LICShape(h, w, ch, cw, model=self._fingerprint, version=LEGACY_STREAM_VERSION)

    def decompress(self, streams: list[bytes], shape: LICShape | bytes) -> np.ndarray:
        torch = self._torch
        shape = _check_shape(shape, self.max_pixels)
        if shape.model is not None and shape.model != self._fingerprint:
            raise ModelMismatchError(f"stream encoded with model {shape.model}, offered {self.name} {self._fingerprint}")
        if not isinstance(streams, (list, tuple)) or not streams:
            raise InvalidInputError("expected a non-empty list of byte streams")
        hp, wp = shape.coded_height + (-shape.coded_height % PAD), shape.coded_width + (-shape.coded_width % PAD)
        try:
            with torch.no_grad():
                x = self.net.decompress([[bytes(s)] for s in streams], [hp // self._step, wp // self._step])["x_hat"]
        except Exception as exc:  # noqa: BLE001 - compressai raises raw errors on bad streams
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EntropyDecodeError(f"CompressAI stream cannot be decoded ({first})") from None
        out = x[0].clamp(0, 1).mul(255).round().permute(1, 2, 0).cpu().numpy().astype(np.uint8)
        return _resize(np.ascontiguousarray(out[: shape.coded_height, : shape.coded_width]), shape.height, shape.width)


def _with_table_keys(state: dict[str, Any], arch: str) -> dict[str, Any]:
    """``state`` with empty entropy-table buffers where a checkpoint has none (saved by an older CompressAI or
    with the tables stripped), so that CompressAI loads it and computes them."""
    torch = _torch()
    state = dict(state)
    prefixes = {k[: -len(".quantiles")] for k in state if k.endswith("entropy_bottleneck.quantiles")}
    names = {p: ("_quantized_cdf", "_offset", "_cdf_length") for p in prefixes}
    if arch != "bmshj2018-factorized" and any(k.startswith("g_s.") for k in state):
        names["gaussian_conditional"] = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
    for prefix, keys in names.items():
        for key in keys:
            full = f"{prefix}.{key}"
            if full not in state:
                state[full] = torch.zeros(0, dtype=torch.float32 if key == "scale_table" else torch.int32)
    return state


def _has_cdf_tables(net: Any) -> bool:
    """Whether every entropy model of a CompressAI net holds integer CDF tables (as loaded, before update)."""
    from compressai.entropy_models import EntropyModel

    found = [m for m in net.modules() if isinstance(m, EntropyModel)]
    return bool(found) and all(m._offset.numel() > 0 and m._quantized_cdf.numel() > 0 for m in found)


def zoo_cached(torch: Any, arch: str, quality: int, metric: str) -> bool:
    """Whether CompressAI's zoo file for (arch, quality, metric) sits in torch's hub cache."""
    try:
        from compressai.zoo.image import model_urls

        url = model_urls[arch][metric][quality]
    except Exception:  # noqa: BLE001
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).is_file()


def _load_state(path: Path) -> dict[str, Any]:
    """A state dict from safetensors or a torch file with ``weights_only=True`` (no arbitrary unpickling)."""
    torch = _torch()
    if not path.is_file():
        raise MissingModelError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise MissingModelError(f"{path}: cannot be read as safetensors / weights-only torch file ({exc})") from None


def _tiny_lic(arg: str | None, allow_download: bool = False) -> TinyHyperprior:
    """``tiny``: the shipped default; ``tiny:<file>``: a weights file from ``semzip train-lic`` (found in the
    model folders when it is not a path here). Nothing to download: ``allow_download`` is accepted and unused."""
    return TinyHyperprior.from_file(locate(arg)) if arg else TinyHyperprior.default()


def _compressai_lic(arg: str, **kw: Any) -> CompressAILIC:
    """``compressai:<arch>:<quality>`` (zoo weights) or ``compressai:<arch>:<checkpoint file>``."""
    arch, _, q = arg.partition(":")
    if q.isdigit():
        return CompressAILIC(arch, int(q), **kw)
    return CompressAILIC(arch, 1, checkpoint=locate(q) if q else None, **kw)


LIC_MODELS = ModelRegistry("LIC", "tiny")
"""The learned image codecs by spec."""
LIC_MODELS.register("tiny", _tiny_lic, "tiny[:<weights.safetensors>] (semzip's own hyperprior; the default)")
LIC_MODELS.register(
    "compressai", _compressai_lic,
    "compressai:<arch>:<quality or checkpoint file> (a CompressAI zoo model, e.g. compressai:mbt2018:3)",
)


def load_lic(spec: str = "tiny", **kw: Any) -> LearnedImageCodec:
    """Build a codec by name: ``tiny`` | ``tiny:<weights.safetensors>`` |
    ``compressai:<arch>:<quality>`` | ``compressai:<arch>:<checkpoint file>`` (see :data:`LIC_MODELS`)."""
    return LIC_MODELS.load(spec, **kw)


def known_lics() -> list[str]:
    """Usage patterns of the registered LIC specs."""
    return LIC_MODELS.usages()
