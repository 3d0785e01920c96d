"""Integer entropy models: categorical tables and CompressAI-style quantized Gaussian/Laplace tables.

Cross-machine determinism
-------------------------
Every probability the decoder uses is an integer frequency ``f_i >= 1`` with ``sum(f) == 2**P``
(``P`` = ``precision``, at most 24). Integer tables come from one documented step,
:func:`integerize`: each symbol first gets 1, the remaining ``2**P - n`` units are split in
proportion to the (non-negative integer) counts with integer floor division, and the units left
over go to the largest remainders, ties broken by the lower index. Only Python/int64 integer
arithmetic is used, so the same counts give the same table on every machine.

Handing a table to ``constriction`` without losing it: constriction's fast quantizer
(``perfect=False``, the one we use on both sides) builds a 24-bit CDF as
``cdf_i = floor(cum_i * (2**24 - n) / sum(p)) + i``. We pass ``p_i = f_i * 2**(24 - P) - 1``
(small integers, exact in float64). Then ``sum(p) == 2**24 - n`` exactly, the scale factor is
exactly 1.0 and ``cdf_i`` equals our own integer CDF: the coder uses our table bit for bit, and
no float rounding enters the decoder's probabilities. (Passing ``f / 2**P`` instead, as one might
expect, makes constriction add one unit per symbol on top and re-round, which is deterministic
but is not our table.)

Parametric tables
-----------------
:class:`QuantizedGaussianTable` and :class:`QuantizedLaplaceTable` follow CompressAI's
``GaussianConditional``: a fixed log-spaced grid of scales (default 64 from 0.11 to 256); for
each grid scale ``s_k`` an integer table over residuals ``[-T_k, T_k]`` plus one escape bin,
with ``T_k = ceil(tail * s_k)``. The caller codes residuals ``round(x - mean)`` with a per-symbol
scale index from :meth:`QuantizedTable.scale_index` (a pure comparison against precomputed bin
boundaries, no transcendental function on the coding path). A residual outside ``[-T_k, T_k]``
codes the escape bin, then its sign, bit length and mantissa with uniform models, so any int32
value round-trips.

The bin probabilities are computed once in float64 (``math.erfc`` / ``math.exp``), turned into
integer counts ``floor(p * 2**32)`` and integerized with :func:`integerize`. ``erfc``/``exp``
come from the platform's libm and may differ by an ULP between machines, so each table set has
a :meth:`~QuantizedTable.fingerprint` (sha256 over the grid, boundaries, tails and all integer
tables). Archives store it; a decoder whose tables differ refuses to decode instead of
desynchronising.

The default Gaussian grid (``QuantizedGaussianTable()``: 64 scales 0.11..256, tail 5, precision 24,
``max_tail`` 65536; the learned image codec's y tables) is not recomputed: it ships as a stored integer
table (``entropy/data/gaussian-default.npz``: scales and boundaries as float64 bit patterns, tails, and
the integer tables delta-coded), written by ``scripts/build_gaussian_table.py`` from the computation
above and checked against the pinned fingerprint :data:`DEFAULT_GAUSSIAN_FINGERPRINT` when loaded. So the
default tables are the same on every machine whatever its libm; other grids are computed as above and
still rely on the fingerprint check.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from functools import cached_property
from pathlib import Path
from typing import Any

import constriction
import numpy as np

from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.format.varint import decode_uvarint, encode_uvarint

CODER_PRECISION = 24
"""Bits of probability precision of constriction's default range coder (u32 words, 24-bit models)."""
MAX_PRECISION = 24
MAX_ALPHABET = 2**22
_SERIAL_VERSION = 1
DEFAULT_GAUSSIAN_FINGERPRINT = "aaff32e59b09f0d3"
"""Fingerprint of ``QuantizedGaussianTable()`` (the stored default table; pinned by the tests)."""
DEFAULT_GAUSSIAN_FILE = Path(__file__).parent / "data" / "gaussian-default.npz"
_DEFAULT_GAUSSIAN_SPEC = {"scale_min": 0.11, "scale_max": 256.0, "num_scales": 64, "tail": 5.0,
                          "precision": 24, "max_tail": 65536}

__all__ = [
    "CODER_PRECISION",
    "DEFAULT_GAUSSIAN_FINGERPRINT",
    "MAX_ALPHABET",
    "MAX_PRECISION",
    "CategoricalModel",
    "QuantizedGaussianTable",
    "QuantizedLaplaceTable",
    "QuantizedTable",
    "integerize",
]


def _check_precision(precision: Any) -> int:
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise InvalidInputError(f"precision must be an int, got {type(precision).__name__}")
    precision = int(precision)
    if not 1 <= precision <= MAX_PRECISION:
        raise InvalidInputError(f"precision must be in [1, {MAX_PRECISION}], got {precision}")
    return precision


def integerize(counts: Any, precision: int = 16) -> np.ndarray:
    """Turn non-negative integer counts into frequencies ``>= 1`` summing to ``2**precision``.

    The deterministic step every table in semzip goes through: 1 per symbol, the remaining
    ``2**P - n`` split by integer floor of ``c_i * free / total``, leftovers to the largest
    remainders (ties: lower index). All-zero counts give the most uniform table.
    """
    precision = _check_precision(precision)
    arr = np.asarray(counts)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInputError(f"counts must be a non-empty 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" and not (arr.dtype == object and all(isinstance(c, int) for c in arr)):
        raise InvalidInputError(f"counts must be integers, got dtype {arr.dtype}")
    n = arr.size
    if n > MAX_ALPHABET or n > 2**precision:
        raise InvalidInputError(
            f"alphabet of {n} symbols does not fit precision {precision} (max {min(2**precision, MAX_ALPHABET)})"
        )
    ints = [int(c) for c in arr.tolist()]
    if any(c < 0 for c in ints):
        raise InvalidInputError("counts must be non-negative")
    total = sum(ints)
    free = 2**precision - n
    if total == 0:
        ints, total = [1] * n, n
    if total * free < 2**62:
        c = np.asarray(ints, dtype=np.int64)
        prod = c * free
        base = prod // total
        rem = prod % total
        leftover = free - int(base.sum())
        order = np.lexsort((np.arange(n), -rem))  # largest remainder first, then lower index
        base[order[:leftover]] += 1
        return (base + 1).astype(np.uint32)
    # Huge counts: same step in Python integers.
    base_l = [c * free // total for c in ints]
    rem_l = [c * free % total for c in ints]
    leftover = free - sum(base_l)
    for i in sorted(range(n), key=lambda i: (-rem_l[i], i))[:leftover]:
        base_l[i] += 1
    return np.asarray([b + 1 for b in base_l], dtype=np.uint32)


def _constriction_categorical(freqs: np.ndarray, precision: int) -> Any:
    """A constriction model whose 24-bit CDF equals our integer table exactly (see module doc)."""
    weights = freqs.astype(np.float64) * float(2 ** (CODER_PRECISION - precision)) - 1.0
    return constriction.stream.model.Categorical(weights, perfect=False)


# ---------------------------------------------------------------- varints


def _put_varint(out: bytearray, value: int) -> None:
    out += encode_uvarint(value)


def _get_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    return decode_uvarint(data, pos, f"categorical model {what}")


# ---------------------------------------------------------------- categorical


class CategoricalModel:
    """A categorical distribution over ``{0..n-1}`` as integer frequencies summing to ``2**precision``."""

    def __init__(self, freqs: Any, precision: int = 16) -> None:
        precision = _check_precision(precision)
        arr = np.asarray(freqs)
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidInputError(f"freqs must be a non-empty 1-D array, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise InvalidInputError(f"freqs must be integers, got dtype {arr.dtype}")
        if arr.size > MAX_ALPHABET:
            raise InvalidInputError(f"alphabet of {arr.size} symbols exceeds the maximum {MAX_ALPHABET}")
        if int(arr.min()) < 1:
            raise InvalidInputError("every frequency must be >= 1 (use CategoricalModel.from_counts)")
        total = int(arr.astype(np.int64).sum())
        if total != 2**precision:
            raise InvalidInputError(
                f"freqs sum to {total}, expected 2**{precision} = {2**precision} (use from_counts)"
            )
        self.freqs = arr.astype(np.uint32)
        self.freqs.flags.writeable = False
        self.precision = precision

    @classmethod
    def from_counts(cls, counts: Any, precision: int = 16) -> CategoricalModel:
        """Build a model from integer counts with the deterministic step of :func:`integerize`."""
        return cls(integerize(counts, precision), precision)

    @classmethod
    def uniform(cls, n: int, precision: int = 16) -> CategoricalModel:
        """The (nearly) uniform table over ``n`` symbols (leftovers go to the lowest indices)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidInputError(f"uniform alphabet size must be a positive int, got {n!r}")
        return cls(integerize(np.zeros(int(n), dtype=np.int64), precision), precision)

    @property
    def num_symbols(self) -> int:
        """Alphabet size ``n``."""
        return int(self.freqs.size)

    def __len__(self) -> int:
        return self.num_symbols

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalModel):
            return NotImplemented
        return self.precision == other.precision and np.array_equal(self.freqs, other.freqs)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"CategoricalModel(n={self.num_symbols}, precision={self.precision}, fp={self.fingerprint()})"

    def probabilities(self) -> np.ndarray:
        """``freqs / 2**precision`` as float64 (exact: a dyadic rational with <= 24 bits)."""
        return self.freqs.astype(np.float64) / float(2**self.precision)

    def ideal_bits(self, symbols: Any) -> float:
        """Sum of ``-log2(freq / 2**P)`` over ``symbols``: the information content under this table."""
        s = np.asarray(symbols)
        if s.size == 0:
            return 0.0
        if s.dtype.kind not in "iu" or int(s.min()) < 0 or int(s.max()) >= self.num_symbols:
            raise InvalidInputError(f"symbols must be integers in [0, {self.num_symbols})")
        f = self.freqs[s.ravel()].astype(np.float64)
        return float(s.size * self.precision - np.log2(f).sum())

    def fingerprint(self) -> str:
        """Short sha256 hex (16 chars) of the table: equal tables, equal fingerprints."""
        h = hashlib.sha256(b"semzip.entropy.categorical\x00")
        h.update(struct.pack("<BI", self.precision, self.num_symbols))
        h.update(self.freqs.astype("<u4").tobytes())
        return h.hexdigest()[:16]

    def to_bytes(self) -> bytes:
        """Compact serialization: version, precision, n, then ``f - 1`` as varints with zero-runs.

        Token ``t`` (varint): odd -> one symbol with ``f - 1 = (t + 1) // 2``; even -> a run of
        ``t // 2 + 1`` symbols with ``f == 1``. A 1000-symbol table costs about 1-2 bytes/symbol.
        """
        out = bytearray((_SERIAL_VERSION, self.precision))
        _put_varint(out, self.num_symbols)
        vals = (self.freqs.astype(np.int64) - 1).tolist()
        i, n = 0, len(vals)
        while i < n:
            if vals[i] == 0:
                j = i
                while j < n and vals[j] == 0:
                    j += 1
                _put_varint(out, 2 * (j - i - 1))
                i = j
            else:
                _put_varint(out, 2 * vals[i] - 1)
                i += 1
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> CategoricalModel:
        """Inverse of :meth:`to_bytes`; raises :class:`CorruptedSectionError` on any malformed input."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < 3:
            raise CorruptedSectionError("categorical model: too short")
        if data[0] != _SERIAL_VERSION:
            raise CorruptedSectionError(f"categorical model: unknown serialization version {data[0]}")
        precision = data[1]
        if not 1 <= precision <= MAX_PRECISION:
            raise CorruptedSectionError(f"categorical model: invalid precision {precision}")
        n, pos = _get_varint(data, 2, "alphabet size")
        if not 1 <= n <= min(MAX_ALPHABET, 2**precision):
            raise CorruptedSectionError(f"categorical model: invalid alphabet size {n}")
        # Each token covers >= 1 symbol and takes >= 1 byte: cheap bound before allocating.
        vals: list[int] = []
        total = 0
        limit = 2**precision
        while len(vals) < n:
            t, pos = _get_varint(data, pos, "frequency")
            if t % 2 == 0:
                run = t // 2 + 1
                if len(vals) + run > n:
                    raise CorruptedSectionError("categorical model: run past the alphabet end")
                vals.extend([1] * run)
                total += run
            else:
                f = (t + 1) // 2 + 1
                total += f
                if total > limit:
                    raise CorruptedSectionError("categorical model: frequencies exceed 2**precision")
                vals.append(f)
        if pos != len(data):
            raise CorruptedSectionError(f"categorical model: {len(data) - pos} trailing bytes")
        if total != limit:
            raise CorruptedSectionError(f"categorical model: frequencies sum to {total}, expected {limit}")
        return cls(np.asarray(vals, dtype=np.uint32), precision)

    @cached_property
    def _coder_model(self) -> Any:
        if self.num_symbols < 2:
            return None  # a one-symbol alphabet carries no information: nothing is coded
        return _constriction_categorical(self.freqs, self.precision)


# ---------------------------------------------------------------- parametric tables


class QuantizedTable:
    """Base of the scale-indexed integer tables (see module docstring); use a subclass."""

    family = "abstract"
    default_tail = 0.0

    def __init__(
        self,
        scale_min: float = 0.11,
        scale_max: float = 256.0,
        num_scales: int = 64,
        tail: float | None = None,
        precision: int = 24,
        max_tail: int = 65536,
        *,
        stored: bool = True,
    ) -> None:
        """``stored=False`` recomputes even the default Gaussian grid with libm (the build script does)."""
        precision = _check_precision(precision)
        if type(self) is QuantizedTable:
            raise InvalidInputError(
                "QuantizedTable is abstract: use QuantizedGaussianTable or QuantizedLaplaceTable"
            )
        tail = self.default_tail if tail is None else float(tail)
        if not (math.isfinite(scale_min) and math.isfinite(scale_max) and 0 < scale_min <= scale_max):
            raise InvalidInputError(f"need 0 < scale_min <= scale_max, got {scale_min}, {scale_max}")
        if not 1 <= int(num_scales) <= 4096:
            raise InvalidInputError(f"num_scales must be in [1, 4096], got {num_scales}")
        if not (math.isfinite(tail) and tail > 0):
            raise InvalidInputError(f"tail must be a positive number of scales, got {tail}")
        if not 1 <= int(max_tail) <= (min(2**precision, MAX_ALPHABET) - 2) // 2:
            raise InvalidInputError(f"max_tail {max_tail} does not fit precision {precision}")
        self.scale_min = float(scale_min)
        self.scale_max = float(scale_max)
        self.num_scales = int(num_scales)
        self.tail = tail
        self.precision = precision
        self.max_tail = int(max_tail)

        self._models: dict[int, Any] = {}
        if stored and self._is_stored_default():
            self.scales, self.boundaries, self.tails, self.tables = _stored_gaussian()
            return
        k = self.num_scales
        if k == 1:
            scales = np.array([self.scale_min])
        else:
            lo, hi = math.log(self.scale_min), math.log(self.scale_max)
            scales = np.array([math.exp(lo + (hi - lo) * i / (k - 1)) for i in range(k)])
        self.scales = scales
        # Geometric midpoints: scale_index() is a searchsorted against these, no libm on the data path.
        self.boundaries = np.sqrt(scales[:-1] * scales[1:])
        self.tails = np.array(
            [min(self.max_tail, max(1, math.ceil(tail * s))) for s in scales], dtype=np.int64
        )
        self.tables: list[np.ndarray] = []
        for s, t in zip(scales.tolist(), self.tails.tolist(), strict=True):
            pmf, escape = self._pmf(s, int(t))
            counts = [math.floor(p * 2.0**32) for p in pmf] + [math.floor(escape * 2.0**32)]
            self.tables.append(integerize(np.asarray(counts, dtype=np.int64), precision))
        for tbl in self.tables:
            tbl.flags.writeable = False

    def _pmf(self, scale: float, tail: int) -> tuple[list[float], float]:  # pragma: no cover
        raise NotImplementedError

    def _is_stored_default(self) -> bool:
        """Whether this is the grid that ships as a stored table (the default Gaussian one)."""
        return self.family == "gaussian" and {k: v for k, v in self.spec().items() if k != "family"} == \
            _DEFAULT_GAUSSIAN_SPEC

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The table set as plain arrays (what ``scripts/build_gaussian_table.py`` stores)."""
        lengths = np.array([t.size for t in self.tables], dtype=np.int64)
        flat = np.concatenate([np.diff(t.astype(np.int64), prepend=0) for t in self.tables])
        return {
            "scales_f8": np.asarray(self.scales, dtype="<f8").view("<u8"),
            "boundaries_f8": np.asarray(self.boundaries, dtype="<f8").view("<u8"),
            "tails": self.tails.astype("<i8"),
            "lengths": lengths.astype("<i8"),
            "deltas": flat.astype("<i4"),
        }

    def spec(self) -> dict[str, Any]:
        """Constructor arguments: enough to rebuild this table set (check the fingerprint after)."""
        return {
            "family": self.family,
            "scale_min": self.scale_min,
            "scale_max": self.scale_max,
            "num_scales": self.num_scales,
            "tail": self.tail,
            "precision": self.precision,
            "max_tail": self.max_tail,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "family")
        return f"{type(self).__name__}({args})"

    def fingerprint(self) -> str:
        """Short sha256 hex (16 chars) over grid, boundaries, tails and every integer table."""
        h = hashlib.sha256(b"semzip.entropy.quantized\x00" + self.family.encode() + b"\x00")
        h.update(struct.pack("<BII", self.precision, self.num_scales, self.max_tail))
        h.update(np.asarray(self.scales, dtype="<f8").tobytes())
        h.update(np.asarray(self.boundaries, dtype="<f8").tobytes())
        h.update(self.tails.astype("<i8").tobytes())
        for tbl in self.tables:
            h.update(tbl.astype("<u4").tobytes())
        return h.hexdigest()[:16]

    def scale_index(self, scales: Any) -> np.ndarray:
        """Nearest grid index (in log-scale) of each scale, clipped to the grid; int64 array."""
        s = np.asarray(scales, dtype=np.float64)
        if np.isnan(s).any():
            raise InvalidInputError("scales contain NaN")
        return np.searchsorted(self.boundaries, s, side="right").astype(np.int64)

    def model(self, index: int) -> CategoricalModel:
        """The integer table of grid scale ``index`` as a categorical over ``2*T+2`` bins (last = escape)."""
        if not 0 <= int(index) < self.num_scales:
            raise InvalidInputError(f"scale index {index} is outside the grid [0, {self.num_scales})")
        return CategoricalModel(self.tables[index], self.precision)

    def ideal_bits(self, residuals: Any, scale_idx: Any) -> float:
        """Information content of ``residuals`` under the tables, escapes' raw bits included."""
        r = np.asarray(residuals, dtype=np.int64).ravel()
        idx = np.asarray(scale_idx, dtype=np.int64).ravel()
        if r.size == 0:
            return 0.0
        if r.shape != idx.shape or int(idx.min()) < 0 or int(idx.max()) >= self.num_scales:
            raise InvalidInputError("residuals and scale_idx must match in size, indices within the grid")
        t = self.tails[idx]
        esc = np.abs(r) > t
        sym = np.where(esc, 2 * t + 1, r + t)
        bits = 0.0
        for k in np.unique(idx).tolist():
            sel = idx == k
            bits += float(sel.sum()) * self.precision - float(
                np.log2(self.tables[k][sym[sel]].astype(np.float64)).sum()
            )
        if esc.any():
            x = np.abs(r[esc]) - t[esc]  # = magnitude overflow + 1 >= 1
            nbits = np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1  # exact bit_length - 1
            bits += float(esc.sum()) * (1 + 5) + float(nbits.sum())  # sign + bit length + mantissa
        return bits

    def _coder_model(self, index: int) -> Any:
        model = self._models.get(index)
        if model is None:
            model = _constriction_categorical(self.tables[index], self.precision)
            self._models[index] = model
        return model


@functools.lru_cache(maxsize=1)
def _stored_gaussian() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """The default Gaussian table set from its stored file, checked against the pinned fingerprint."""
    try:
        with np.load(DEFAULT_GAUSSIAN_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("scales_f8", "boundaries_f8", "tails", "lengths", "deltas")}
        lengths = arrays["lengths"].astype(np.int64)
        ends = np.cumsum(lengths)
        if ends[-1] != arrays["deltas"].size:
            raise ValueError("table lengths do not add up")
        tables = [np.cumsum(d.astype(np.int64)).astype(np.uint32)
                  for d in np.split(arrays["deltas"], ends[:-1])]
        scales = arrays["scales_f8"].astype("<u8").view("<f8").astype(np.float64)
        boundaries = arrays["boundaries_f8"].astype("<u8").view("<f8").astype(np.float64)
        tails = arrays["tails"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise CorruptedSectionError(f"the stored Gaussian table {DEFAULT_GAUSSIAN_FILE} cannot be read ({exc}); "
                      "reinstall semzip") from None
    for a in (scales, boundaries, tails, *tables):
        a.flags.writeable = False
    probe = QuantizedGaussianTable.__new__(QuantizedGaussianTable)
    probe.precision, probe.num_scales, probe.max_tail = 24, 64, 65536
    probe.scales, probe.boundaries, probe.tails, probe.tables = scales, boundaries, tails, tables
    if probe.fingerprint() != DEFAULT_GAUSSIAN_FINGERPRINT:
        raise CorruptedSectionError(f"the stored Gaussian table {DEFAULT_GAUSSIAN_FILE} does not match its fingerprint "
                      f"{DEFAULT_GAUSSIAN_FINGERPRINT}; reinstall semzip")
    return scales, boundaries, tails, tables


class QuantizedGaussianTable(QuantizedTable):
    """Zero-mean Gaussian residual tables; ``scale`` is the standard deviation; ``T_k = ceil(5 * s_k)``."""

    family = "gaussian"
    default_tail = 5.0

    def _pmf(self, scale: float, tail: int) -> tuple[list[float], float]:
        c = 1.0 / (scale * math.sqrt(2.0))
        # Upper tail mass beyond |v| + 0.5 via erfc (accurate far out), mirrored for v < 0.
        upper = [0.5 * math.erfc((v + 0.5) * c) for v in range(tail + 1)]
        half = [1.0 - 2.0 * upper[0]] + [upper[v - 1] - upper[v] for v in range(1, tail + 1)]
        return half[:0:-1] + half, 2.0 * upper[tail]


class QuantizedLaplaceTable(QuantizedTable):
    """Zero-mean Laplace residual tables; ``scale`` is ``b`` (std = b*sqrt(2)); ``T_k = ceil(14 * b_k)``."""

    family = "laplace"
    default_tail = 14.0

    def _pmf(self, scale: float, tail: int) -> tuple[list[float], float]:
        upper = [0.5 * math.exp(-(v + 0.5) / scale) for v in range(tail + 1)]
        half = [1.0 - 2.0 * upper[0]] + [upper[v - 1] - upper[v] for v in range(1, tail + 1)]
        return half[:0:-1] + half, 2.0 * upper[tail]
