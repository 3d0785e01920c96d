"""Stream coder: a thin wrapper over ONE constriction range coder (FIFO: decode order == encode order).

An :class:`Encoder` appends calls (categorical, parametric, uniform) to a single stream;
a :class:`Decoder` must replay the same calls with the same models in the same order.

Stream bytes: constriction's compressed ``uint32`` words, little-endian, with trailing zero
bytes dropped (the decoder pads with zeros, which is what constriction reads past the end
anyway, so decoding is unchanged; tested).

Within one parametric call the order is: primary symbols grouped by ascending scale index
(original order inside a group, each group coded i.i.d. with that scale's table), then for the
escaped residuals (original order) their signs, bit lengths (uniform over 32) and mantissas
(uniform over at most 2**16 per piece). Grouping lets each group use one precomputed model.

Errors: symbols that do not fit a model raise :class:`InvalidInputError` at encode time.
A decoder never lets a constriction exception out: malformed streams either decode to
well-defined (garbage) symbols or raise :class:`EntropyDecodeError`; :meth:`Decoder.finish`
reports unread data when constriction can tell.
"""

from __future__ import annotations

from typing import Any

import constriction
import numpy as np

from semzip.entropy.models import (
    CategoricalModel,
    QuantizedGaussianTable,
    QuantizedLaplaceTable,
    QuantizedTable,
)
from semzip.errors import EntropyDecodeError, InvalidInputError, ResourceLimitError

__all__ = ["MAX_DECODE_COUNT", "Decoder", "Encoder", "decode_symbols", "encode_symbols"]

# Most symbols one decode call may produce. Counts come from (possibly hostile) archive headers and a
# near-certain symbol costs almost no bits, so the stream length cannot bound them: without a cap a
# forged count makes constriction abort the process on a failed allocation.
MAX_DECODE_COUNT = 1 << 26

_UNIFORM_MAX = 2**24 - 1  # constriction's Uniform needs size < 2**24
_MAX_UNIFORM_N = 2**32
_ESC_BITLEN_SIZE = 32
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_Uniform = constriction.stream.model.Uniform


def _int_array(values: Any, name: str) -> np.ndarray:
    """Flatten ``values`` to an int64 array; refuse non-integer dtypes with a clear message."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise InvalidInputError(f"{name} has values beyond int64")
    return arr.astype(np.int64, copy=False).ravel()


def _check_range(arr: np.ndarray, lo: int, hi: int, name: str, what: str) -> None:
    """Raise if any value is outside ``[lo, hi)``, naming the first offender and its position."""
    if arr.size == 0:
        return
    bad = (arr < lo) | (arr >= hi)
    if bad.any():
        pos = int(np.argmax(bad))
        raise InvalidInputError(
            f"{name}[{pos}] = {int(arr[pos])} is outside {what} [{lo}, {hi}); "
            f"{int(bad.sum())} value(s) out of range"
        )


def _check_count(count: Any) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise InvalidInputError(f"count must be a non-negative int, got {count!r}")
    return int(count)


def _check_decode_count(count: Any, limit: int | None = None) -> int:
    count = _check_count(count)
    limit = MAX_DECODE_COUNT if limit is None else limit
    if count > limit:
        raise ResourceLimitError(
            f"refusing to decode {count} symbols in one call (limit {limit}, semzip.entropy.coder."
            "MAX_DECODE_COUNT): the archive's declared sizes are corrupt or hostile"
        )
    return count


def _check_uniform_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= _MAX_UNIFORM_N:
        raise InvalidInputError(f"uniform alphabet size must be an int in [1, 2**32], got {n!r}")
    return int(n)


def _bit_length_minus_one(x: np.ndarray) -> np.ndarray:
    """floor(log2(x)) for int64 x >= 1, exactly (frexp does not round)."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1


class Encoder:
    """Appends entropy-coded calls to one range-coded stream; :meth:`to_bytes` gives the stream."""

    def __init__(self) -> None:
        self._enc = constriction.stream.queue.RangeEncoder()

    def _encode(self, symbols: np.ndarray, model: Any, *params: np.ndarray) -> None:
        if symbols.size == 0:
            return
        try:
            self._enc.encode(symbols.astype(np.int32), model, *params)
        except (KeyError, ValueError) as exc:  # validation above should make this unreachable
            raise InvalidInputError(f"constriction refused to encode: {exc}") from exc

    def encode_categorical(self, symbols: Any, model: CategoricalModel) -> None:
        """Code integer ``symbols`` in ``[0, len(model))`` i.i.d. under ``model``."""
        if not isinstance(model, CategoricalModel):
            raise InvalidInputError(f"model must be a CategoricalModel, got {type(model).__name__}")
        s = _int_array(symbols, "symbols")
        _check_range(s, 0, model.num_symbols, "symbols", "the alphabet")
        if model.num_symbols > 1:
            self._encode(s, model._coder_model)

    def encode_uniform(self, values: Any, n: int) -> None:
        """Code raw integers ``values`` in ``[0, n)`` uniformly (``n`` up to ``2**32``)."""
        n = _check_uniform_n(n)
        v = _int_array(values, "values")
        _check_range(v, 0, n, "values", "the uniform range")
        if n == 1 or v.size == 0:
            return
        if n <= _UNIFORM_MAX:
            self._encode(v, _Uniform(n))
        else:  # two pieces: high part over ceil(n / 2**16), low 16 bits
            self._encode(v >> 16, _Uniform(-(-n // 65536)))
            self._encode(v & 0xFFFF, _Uniform(65536))

    def encode_parametric(self, residuals: Any, scale_idx: Any, table: QuantizedTable) -> None:
        """Code integer residuals (int32 range) with per-symbol grid scale indices of ``table``."""
        if not isinstance(table, QuantizedTable):
            raise InvalidInputError(f"table must be a QuantizedTable, got {type(table).__name__}")
        r = _int_array(residuals, "residuals")
        idx = _int_array(scale_idx, "scale_idx")
        if r.shape != idx.shape:
            raise InvalidInputError(
                f"residuals and scale_idx must have the same size, got {r.size} and {idx.size}"
            )
        if r.size == 0:
            return
        _check_range(r, _INT32_MIN, _INT32_MAX + 1, "residuals", "int32")
        _check_range(idx, 0, table.num_scales, "scale_idx", "the scale grid")
        t = table.tails[idx]
        esc = np.abs(r) > t
        sym = np.where(esc, 2 * t + 1, r + t)
        order = np.argsort(idx, kind="stable")
        groups, starts = np.unique(idx[order], return_index=True)
        bounds = [*starts.tolist(), r.size]
        for g, k in enumerate(groups.tolist()):
            self._encode(sym[order[bounds[g] : bounds[g + 1]]], table._coder_model(k))
        if esc.any():
            self._encode_escapes(r[esc], t[esc])

    def _encode_escapes(self, values: np.ndarray, tails: np.ndarray) -> None:
        x = np.abs(values) - tails  # >= 1
        nbits = _bit_length_minus_one(x)
        mant = x - (np.int64(1) << nbits)
        self._encode((values < 0).astype(np.int64), _Uniform(2))
        self._encode(nbits, _Uniform(_ESC_BITLEN_SIZE))
        lo_sel = nbits >= 1
        lo_bits = np.minimum(nbits[lo_sel], 16)
        self._encode(mant[lo_sel] & 0xFFFF, _Uniform(), (np.int64(1) << lo_bits).astype(np.int32))
        hi_sel = nbits > 16
        self._encode(mant[hi_sel] >> 16, _Uniform(), (np.int64(1) << (nbits[hi_sel] - 16)).astype(np.int32))

    def encode_gaussian(self, residuals: Any, scale_idx: Any, table: QuantizedGaussianTable) -> None:
        """:meth:`encode_parametric` restricted to Gaussian tables."""
        if not isinstance(table, QuantizedGaussianTable):
            raise InvalidInputError(f"expected a QuantizedGaussianTable, got {type(table).__name__}")
        self.encode_parametric(residuals, scale_idx, table)

    def encode_laplace(self, residuals: Any, scale_idx: Any, table: QuantizedLaplaceTable) -> None:
        """:meth:`encode_parametric` restricted to Laplace tables."""
        if not isinstance(table, QuantizedLaplaceTable):
            raise InvalidInputError(f"expected a QuantizedLaplaceTable, got {type(table).__name__}")
        self.encode_parametric(residuals, scale_idx, table)

    def to_bytes(self) -> bytes:
        """The stream so far: compressed words little-endian, trailing zero bytes dropped."""
        words = self._enc.get_compressed()
        return words.astype("<u4").tobytes().rstrip(b"\x00")

    def num_bits(self) -> int:
        """Actual size of :meth:`to_bytes` in bits (whole bytes; what a file would store)."""
        return 8 * len(self.to_bytes())


class Decoder:
    """Replays the calls of an :class:`Encoder` on its bytes, in the same order with the same models."""

    def __init__(self, data: bytes | bytearray | memoryview, max_count: int | None = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"Decoder needs bytes, got {type(data).__name__}")
        self.max_count = max_count  # symbols one call may decode; None: the module's MAX_DECODE_COUNT
        raw = bytes(data)
        raw += b"\x00" * (-len(raw) % 4)
        words = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)

    def _decode(self, count: int, model: Any, *params: np.ndarray) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            if params:
                out = self._dec.decode(model, *params)
            else:
                out = self._dec.decode(model, count)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # incl. pyo3's PanicException (a BaseException): never escape raw
            raise EntropyDecodeError(
                f"entropy-coded stream cannot be decoded ({exc}); the data is corrupt or was "
                "encoded with a different model"
            ) from exc
        return np.asarray(out, dtype=np.int64)

    def decode_categorical(self, model: CategoricalModel, count: int) -> np.ndarray:
        """Decode ``count`` symbols coded by :meth:`Encoder.encode_categorical`; int64 array."""
        if not isinstance(model, CategoricalModel):
            raise InvalidInputError(f"model must be a CategoricalModel, got {type(model).__name__}")
        count = _check_decode_count(count, self.max_count)
        if model.num_symbols == 1:
            return np.zeros(count, dtype=np.int64)
        return self._decode(count, model._coder_model)

    def decode_uniform(self, n: int, count: int) -> np.ndarray:
        """Decode ``count`` values coded by :meth:`Encoder.encode_uniform` with the same ``n``."""
        n = _check_uniform_n(n)
        count = _check_decode_count(count, self.max_count)
        if n == 1 or count == 0:
            return np.zeros(count, dtype=np.int64)
        if n <= _UNIFORM_MAX:
            return self._decode(count, _Uniform(n))
        hi = self._decode(count, _Uniform(-(-n // 65536)))
        lo = self._decode(count, _Uniform(65536))
        v = (hi << 16) | lo
        if (v >= n).any():
            raise EntropyDecodeError(f"decoded uniform value >= {n}: the stream is corrupt")
        return v

    def decode_parametric(self, scale_idx: Any, table: QuantizedTable) -> np.ndarray:
        """Decode ``len(scale_idx)`` residuals coded by :meth:`Encoder.encode_parametric`; int64."""
        if not isinstance(table, QuantizedTable):
            raise InvalidInputError(f"table must be a QuantizedTable, got {type(table).__name__}")
        idx = _int_array(scale_idx, "scale_idx")
        _check_range(idx, 0, table.num_scales, "scale_idx", "the scale grid")
        n = _check_decode_count(idx.size, self.max_count)
        sym = np.zeros(n, dtype=np.int64)
        if n == 0:
            return sym
        order = np.argsort(idx, kind="stable")
        groups, starts = np.unique(idx[order], return_index=True)
        bounds = [*starts.tolist(), n]
        for g, k in enumerate(groups.tolist()):
            sel = order[bounds[g] : bounds[g + 1]]
            sym[sel] = self._decode(sel.size, table._coder_model(k))
        t = table.tails[idx]
        esc = sym == 2 * t + 1
        out = sym - t
        if esc.any():
            out[esc] = self._decode_escapes(t[esc])
        return out

    def _decode_escapes(self, tails: np.ndarray) -> np.ndarray:
        m = tails.size
        neg = self._decode(m, _Uniform(2))
        nbits = self._decode(m, _Uniform(_ESC_BITLEN_SIZE))
        mant = np.zeros(m, dtype=np.int64)
        lo_sel = nbits >= 1
        lo_sizes = (np.int64(1) << np.minimum(nbits[lo_sel], 16)).astype(np.int32)
        mant[lo_sel] = self._decode(int(lo_sel.sum()), _Uniform(), lo_sizes)
        hi_sel = nbits > 16
        hi_sizes = (np.int64(1) << (nbits[hi_sel] - 16)).astype(np.int32)
        mant[hi_sel] |= self._decode(int(hi_sel.sum()), _Uniform(), hi_sizes) << 16
        mag = (np.int64(1) << nbits) + mant + tails
        values = np.where(neg == 1, -mag, mag)
        if ((values < _INT32_MIN) | (values > _INT32_MAX)).any():
            raise EntropyDecodeError(
                "decoded an escaped residual outside int32: the stream is corrupt or the table differs"
            )
        return values

    def decode_gaussian(self, scale_idx: Any, table: QuantizedGaussianTable) -> np.ndarray:
        """:meth:`decode_parametric` restricted to Gaussian tables."""
        if not isinstance(table, QuantizedGaussianTable):
            raise InvalidInputError(f"expected a QuantizedGaussianTable, got {type(table).__name__}")
        return self.decode_parametric(scale_idx, table)

    def decode_laplace(self, scale_idx: Any, table: QuantizedLaplaceTable) -> np.ndarray:
        """:meth:`decode_parametric` restricted to Laplace tables."""
        if not isinstance(table, QuantizedLaplaceTable):
            raise InvalidInputError(f"expected a QuantizedLaplaceTable, got {type(table).__name__}")
        return self.decode_parametric(scale_idx, table)

    def finish(self) -> None:
        """Raise :class:`EntropyDecodeError` if the stream provably holds data nobody decoded."""
        try:
            exhausted = self._dec.maybe_exhausted()
        except Exception as exc:  # pragma: no cover - defensive
            raise EntropyDecodeError(f"entropy-coded stream is in an invalid state ({exc})") from exc
        if not exhausted:
            raise EntropyDecodeError(
                "entropy-coded stream has data left after decoding: it is corrupt, or the decoder "
                "made fewer calls (or used other models) than the encoder"
            )


def encode_symbols(symbols: Any, model: CategoricalModel) -> bytes:
    """One-shot: code ``symbols`` under ``model`` and return the stream bytes."""
    enc = Encoder()
    enc.encode_categorical(symbols, model)
    return enc.to_bytes()


def decode_symbols(data: bytes, model: CategoricalModel, n: int) -> np.ndarray:
    """One-shot inverse of :func:`encode_symbols`: ``n`` symbols, then a check for leftover data."""
    dec = Decoder(data)
    out = dec.decode_categorical(model, n)
    dec.finish()
    return out
