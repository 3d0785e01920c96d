"""The exact integer primitives behind every model-driven probability (semzip.entropy.fixedpoint)."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest

from semzip.entropy import fixedpoint as fx


def test_log2e_constant():
    getcontext().prec = 60
    assert fx.LOG2E_Q32 == int((Decimal(1) / Decimal(2).ln() * 2**32).to_integral_value())


def test_rounding_helpers_match_python_integers():
    rng = np.random.default_rng(0)
    x = rng.integers(-(2**40), 2**40, 5000)
    s = rng.integers(0, 30, 5000)
    got = fx.rshift_round(x, s)
    want = [(int(a) + ((1 << int(b)) >> 1)) >> int(b) for a, b in zip(x, s)]
    assert got.tolist() == want
    assert fx.rshift_round(np.array([3, -3]), -2).tolist() == [12, -12]
    b = rng.integers(1, 2**20, 5000)
    assert fx.div_round(x, b).tolist() == [(2 * int(a) + int(c)) // (2 * int(c)) for a, c in zip(x, b)]
    assert fx.rshift_round([5, -5, 7], 1).tolist() == [3, -2, 4]  # halves go up


def test_isqrt_and_bit_length_are_exact():
    rng = np.random.default_rng(1)
    n = np.concatenate([rng.integers(0, 2**62, 3000), np.arange(200), [2**62 - 1, (2**31 - 1) ** 2]])
    assert fx.isqrt(n).tolist() == [math.isqrt(int(v)) for v in n]
    assert fx.bit_length(n).tolist() == [int(v).bit_length() for v in n]


def test_exp2_table_is_within_one_unit_and_fixed():
    t = fx.exp2_frac_table(12, 30)
    ref = np.array([2.0 ** (30 - j / 4096) for j in range(4096)])
    assert np.abs(t - ref).max() <= 0.5 + 1e-6
    # Pinned values: the recipe is part of the integer coders' definition.
    assert t[:3].tolist() == [1073741824, 1073560135, 1073378477] and int(t[-1]) == 536961772
    e = fx.exp2_neg(np.array([0, 4096, 4096 * 31, 4096 * 32, 2048]), 12, 30)
    assert e.tolist() == [2**30, 2**29, 1, 0, round(2**29.5)]  # 2**-1 rounds up


def test_float_bit_patterns_convert_exactly():
    h = np.array([1.0, -2.5, 6.1e-5, 5.96e-8, 65504.0, 0.0], dtype=np.float16)
    q = fx.f16_to_q24(h.view(np.uint16))
    assert (q.astype(np.float64) / 2**24 == h.astype(np.float64)).all()
    f = np.array([1.0, -3.75, 1e-40, 3.4e38, 0.0, 1e-5], dtype=np.float32)
    m, e = fx.f32_to_fraction(f.view(np.uint32))
    assert [math.ldexp(int(a), int(b)) for a, b in zip(m, e)] == f.astype(np.float64).tolist()
    with pytest.raises(ValueError):
        fx.f16_to_q24(np.array([np.inf], dtype=np.float16).view(np.uint16))


def test_requantize_rows():
    rng = np.random.default_rng(2)
    v = rng.integers(-(2**40), 2**40, (6, 50))
    v[3] = 0
    q, mult, shift = fx.requantize_rows(v, 24)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    for r in (0, 1, 2, 4, 5):
        assert 2**23 <= mult[r] < 2**25
        approx = q[r].astype(np.float64) * float(mult[r]) * 2.0 ** -float(shift[r])
        exact = v[r].astype(np.float64) * 2.0**-24
        assert np.abs(approx - exact).max() <= np.abs(exact).max() / 127 * 0.5001
    assert mult[3] == 0 and (q[3] == 0).all()
