"""Exact integer arithmetic for model-driven probabilities: the decode-anywhere rule in code.

A decoder must compute the same frequency tables on every machine (any CPU SIMD level, any thread count,
x86 or ARM, a GPU). Float networks do not: a different summation order or an FMA changes the last bits.
The integer models built on this module (the caption language model, :mod:`semzip.models.intlm`; the
LIC hyper-synthesis, :mod:`semzip.models.lic`) use only operations whose results are defined exactly:

* int64 ``+ - *``, floor division and comparisons (numpy defines them the same on every platform);
* the helpers below, each an exact function of its integer arguments;
* tables that are themselves computed by exact integer recipes (Python integers, ``math.isqrt``):
  no ``exp``/``log``/``sin`` from a platform's libm ever decides a value.

Matrix products are exact integer sums too; the kernels that compute them (float BLAS with bounded
integer inputs, ``torch._int_mm``) live next to their users and are tested to agree bit for bit.

Conventions: "round" means round half up (towards +inf): ``round(a / b) = floor((2a + b) / (2b))``.
Values are int64 numpy arrays; callers keep magnitudes inside the documented bounds (the docstrings say
what may not overflow).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

__all__ = [
    "LOG2E_Q32",
    "bit_length",
    "div_round",
    "exp2_frac_table",
    "exp2_neg",
    "exp_gap_table",
    "f16_to_q24",
    "f32_to_fraction",
    "isqrt",
    "requantize_rows",
    "rshift_round",
    "saturate",
]

LOG2E_Q32 = 6196328019
"""``round(log2(e) * 2**32)``: turns natural-log units into base-2 units (checked by the tests)."""

_POW2 = np.left_shift(np.int64(1), np.arange(63, dtype=np.int64))


def _i64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def rshift_round(x: Any, s: Any) -> np.ndarray:
    """``round(x / 2**s)`` for int64 ``x``; ``s`` (scalar or broadcastable array) in ``[-62, 62]``;
    ``s <= 0`` multiplies by ``2**-s`` (the caller keeps the result inside int64).

    Right shifts are arithmetic (floor) shifts of two's-complement int64, as numpy performs them on every
    platform it supports.
    """
    x = _i64(x)
    if np.ndim(s) == 0:
        k = min(int(s), 62)
        if k > 0:
            return (x + (1 << (k - 1))) >> k
        return x << min(-k, 62) if k < 0 else x.copy()
    s = _i64(s)
    if s.size and s.min() >= 0 and s.max() <= 62:
        return (x + (np.left_shift(np.int64(1), s) >> 1)) >> s
    pos = np.clip(s, 0, 62)
    half = np.where(pos > 0, np.left_shift(np.int64(1), np.maximum(pos - 1, 0)), 0)
    return ((x + half) >> pos) << np.clip(-s, 0, 62)


def div_round(a: Any, b: Any) -> np.ndarray:
    """``round(a / b)`` for int64 ``a`` and ``b > 0`` (``|2a + b|`` must fit int64)."""
    a, b = _i64(a), _i64(b)
    return np.floor_divide(2 * a + b, 2 * b)


def saturate(x: Any, bound: int) -> np.ndarray:
    """Clamp to ``[-bound, bound]``: the documented range of a fixed-point quantity."""
    out = np.minimum(_i64(x), bound)
    return np.maximum(out, -bound, out=out)


def bit_length(x: Any) -> np.ndarray:
    """``int.bit_length`` of each non-negative int64 (0 for 0), by comparison with powers of two."""
    return np.searchsorted(_POW2, _i64(x), side="right").astype(np.int64)


def isqrt(n: Any) -> np.ndarray:
    """``floor(sqrt(n))`` for int64 ``0 <= n < 2**62``, exactly (a float guess, then integer correction)."""
    n = _i64(n)
    r = np.sqrt(n.astype(np.float64)).astype(np.int64)
    while True:  # the guess is within a few units; these loops make it exact
        over = r * r > n
        if not over.any():
            break
        r = r - over
    while True:
        under = (r + 1) * (r + 1) <= n
        if not under.any():
            break
        r = r + under
    return r


@functools.lru_cache(maxsize=8)
def exp2_frac_table(frac_bits: int, out_bits: int) -> np.ndarray:
    """``T[j] = round(2**out_bits * 2**(-j / 2**frac_bits))`` for ``j < 2**frac_bits``, exact recipe.

    With ``P = out_bits + 40`` guard bits: ``c[0] = 2**(P-1)`` and ``c[m] = isqrt(c[m-1] * 2**P)``
    (``c[m]`` = floor of ``2**(-1/2**m)`` in Q.P). ``v`` starts at ``2**P``; for each set bit ``i`` of ``j``
    (low to high) ``v = floor(v * c[frac_bits - i] / 2**P)``; then ``T[j] = round(v / 2**(P - out_bits))``.
    Python integers only: the same table on every machine (tests compare it with ``2**x`` to one unit).
    """
    if not (1 <= frac_bits <= 16 and 1 <= out_bits <= 62):
        raise ValueError("exp2 table: frac_bits in [1, 16], out_bits in [1, 62]")
    p = out_bits + 40
    c = [1 << (p - 1)]
    for _ in range(frac_bits):
        c.append(math.isqrt(c[-1] << p))
    out = np.empty(1 << frac_bits, dtype=np.int64)
    half = 1 << (p - out_bits - 1)
    for j in range(1 << frac_bits):
        v = 1 << p
        for i in range(frac_bits):
            if (j >> i) & 1:
                v = (v * c[frac_bits - i]) >> p
        out[j] = (v + half) >> (p - out_bits)
    out.flags.writeable = False
    return out


def exp2_neg(a: Any, frac_bits: int, out_bits: int) -> np.ndarray:
    """``2**out_bits * 2**(-a / 2**frac_bits)`` for int64 ``a >= 0``: table value of the fraction,
    shifted right (rounded) by the integer part; 0 once the integer part exceeds ``out_bits``."""
    a = _i64(a)
    table = exp2_frac_table(frac_bits, out_bits)
    whole = np.minimum(a >> frac_bits, 62)
    return rshift_round(table[a & ((1 << frac_bits) - 1)], whole)


@functools.lru_cache(maxsize=8)
def exp_gap_table(unit_bits: int, out_bits: int) -> np.ndarray:
    """``T[j] = exp2_neg(round(j * LOG2E_Q32 / 2**(20 + unit_bits)), 12, out_bits)``: ``e**(-j / 2**unit_bits)``
    in Q.out_bits for a gap ``j`` in units of ``2**-unit_bits`` (nats), up to and including its first 0.
    Look it up as ``T[min(j, len(T) - 1)]``: one gather instead of the exp2 steps."""
    if not (0 <= unit_bits <= 16 and 1 <= out_bits <= 40):
        raise ValueError("exp_gap_table: unit_bits in [0, 16], out_bits in [1, 40]")
    j = np.arange((out_bits + 2) << unit_bits, dtype=np.int64)
    vals = exp2_neg(rshift_round(j * LOG2E_Q32, 20 + unit_bits), 12, out_bits)
    table = vals[: int(np.argmax(vals == 0)) + 1].copy()
    table.flags.writeable = False
    return table


def f16_to_q24(bits: Any) -> np.ndarray:
    """IEEE half-precision bit patterns (uint16) -> exact int64 values in units of ``2**-24``.

    Every finite half is a multiple of ``2**-24`` no larger than 65504, so the result is exact
    (``|v| < 2**40``). Infinities and NaNs raise ``ValueError``.
    """
    b = np.asarray(bits, dtype=np.uint16).astype(np.int64)
    sign, exp, mant = b >> 15, (b >> 10) & 31, b & 1023
    if (exp == 31).any():
        raise ValueError("half-precision value is infinite or NaN")
    mag = np.where(exp == 0, mant, np.left_shift(mant + 1024, np.maximum(exp - 1, 0)))
    return np.where(sign == 1, -mag, mag)


def f32_to_fraction(bits: Any) -> tuple[np.ndarray, np.ndarray]:
    """IEEE single-precision bit patterns (uint32) -> exact ``(m, e)`` int64 with value ``m * 2**e``.

    ``|m| < 2**24``; zero gives ``(0, -149)``. Infinities and NaNs raise ``ValueError``.
    """
    b = np.asarray(bits, dtype=np.uint32).astype(np.int64)
    sign, exp, mant = b >> 31, (b >> 23) & 255, b & 0x7FFFFF
    if (exp == 255).any():
        raise ValueError("single-precision value is infinite or NaN")
    m = np.where(exp == 0, mant, mant + (1 << 23))
    e = np.where(exp == 0, -149, exp - 150)
    return np.where(sign == 1, -m, m), e


def requantize_rows(v: Any, frac_bits: int, qmax: int = 127) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact per-row requantisation of a matrix given as integers ``v`` (value ``v * 2**-frac_bits``).

    Returns ``(q, mult, shift)``: ``q = round(qmax * v / amax)`` per row (``amax = max |v|`` of the row;
    |q| <= qmax), and the row scale ``amax / qmax * 2**-frac_bits`` as ``mult * 2**-shift`` with
    ``mult = round(amax * 2**e / qmax)``, ``e = 31 - bit_length(amax)`` (so ``2**23 <= mult < 2**25``) and
    ``shift = frac_bits + e``. All-zero rows give ``q = 0, mult = 0, shift = 0``. ``|v| < 2**54 / qmax``.
    """
    v = _i64(v)
    if v.ndim != 2:
        raise ValueError("requantize_rows takes a 2-D matrix")
    amax = np.abs(v).max(axis=1)
    safe = np.maximum(amax, 1)
    q = div_round(qmax * v, safe[:, None])
    e = 31 - bit_length(safe)
    scaled = np.where(e >= 0, safe * np.left_shift(np.int64(1), np.clip(e, 0, 62)), 0)
    down = np.left_shift(np.int64(qmax), np.clip(-e, 0, 62))
    mult = np.where(e >= 0, div_round(scaled, qmax), div_round(safe, down))
    zero = amax == 0
    return (q.astype(np.int8 if qmax <= 127 else np.int32), np.where(zero, 0, mult),
            np.where(zero, 0, frac_bits + e))
