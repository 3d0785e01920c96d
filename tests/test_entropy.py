"""Tests of semzip.entropy: integer tables, exact hand-off to constriction, round-trips, corruption."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import crashes, tally
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semzip.entropy import (
    CategoricalModel,
    Decoder,
    Encoder,
    QuantizedGaussianTable,
    QuantizedLaplaceTable,
    decode_symbols,
    encode_symbols,
    integerize,
)
from semzip.errors import CorruptedSectionError, EntropyDecodeError, InvalidInputError

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def gauss() -> QuantizedGaussianTable:
    return QuantizedGaussianTable()


@pytest.fixture(scope="module")
def laplace() -> QuantizedLaplaceTable:
    return QuantizedLaplaceTable()


# ------------------------------------------------------------------ integer tables


def test_integerize_golden() -> None:
    freqs = integerize([5, 0, 3, 100, 7], 16)
    assert freqs.dtype == np.uint32
    assert freqs.tolist() == [2850, 1, 1711, 56984, 3990]
    assert CategoricalModel.from_counts([5, 0, 3, 100, 7]).fingerprint() == "e9361d53326905a7"


def test_integerize_ties_go_to_lower_index() -> None:
    assert integerize([1, 1, 1], 2).tolist() == [2, 1, 1]
    assert integerize([0, 0, 0, 0, 0], 3).tolist() == [2, 2, 2, 1, 1]


def test_integerize_huge_counts_same_as_small() -> None:
    counts = [5, 0, 3, 100, 7, 1, 1]
    big = np.array([c * 2**60 for c in counts], dtype=object)
    assert integerize(big, 16).tolist() == integerize(counts, 16).tolist()


@FAST
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=300), st.integers(9, 24))
def test_integerize_properties(counts: list[int], precision: int) -> None:
    a = integerize(counts, precision)
    b = integerize(np.array(counts, dtype=np.int64), precision)
    assert np.array_equal(a, b)
    assert int(a.astype(np.int64).sum()) == 2**precision
    assert int(a.min()) >= 1
    # Monotone in the counts: a larger count never gets a smaller frequency.
    c = np.asarray(counts)
    prev_max = 0
    for u in np.unique(c):
        group = a[c == u].astype(np.int64)
        assert group.min() >= prev_max
        assert group.max() - group.min() <= 1  # equal counts differ by at most a tie-break unit
        prev_max = int(group.max())


def test_categorical_validation() -> None:
    with pytest.raises(InvalidInputError):
        CategoricalModel(np.array([1, 2, 3]), 16)  # wrong sum
    with pytest.raises(InvalidInputError):
        CategoricalModel(np.array([0, 2**16]), 16)  # zero frequency
    with pytest.raises(InvalidInputError):
        CategoricalModel(np.array([0.5, 0.5]), 1)  # floats
    with pytest.raises(InvalidInputError):
        CategoricalModel.from_counts([1, 2], precision=25)
    with pytest.raises(InvalidInputError):
        CategoricalModel.from_counts([-1, 2])
    with pytest.raises(InvalidInputError):
        CategoricalModel.from_counts(np.ones(5, dtype=np.int64), precision=2)  # 5 symbols > 2**2


def test_uniform_and_large_alphabet() -> None:
    m = CategoricalModel.uniform(2**16)
    assert np.all(m.freqs == 1)
    m = CategoricalModel.uniform(2**16 + 3, precision=24)
    assert m.num_symbols == 2**16 + 3
    sym = np.array([0, 2**16 + 2, 12345, 2**16 + 2])
    assert np.array_equal(decode_symbols(encode_symbols(sym, m), m, 4), sym)


def test_ideal_bits() -> None:
    m = CategoricalModel(np.array([2**15, 2**14, 2**14], dtype=np.uint32), 16)
    assert m.ideal_bits([0, 1, 2, 0]) == pytest.approx(1 + 2 + 2 + 1)


# ------------------------------------------------------------------ serialization


def test_to_bytes_compact_and_roundtrip() -> None:
    rng = np.random.default_rng(1)
    counts = rng.zipf(1.3, size=20000) % 1000
    m = CategoricalModel.from_counts(np.bincount(counts, minlength=1000))
    b = m.to_bytes()
    assert len(b) < 2 * 1000
    assert CategoricalModel.from_bytes(b) == m
    sparse = CategoricalModel.from_counts(np.eye(1, 2**16, 7, dtype=np.int64)[0], precision=24)
    assert len(sparse.to_bytes()) < 20
    assert CategoricalModel.from_bytes(sparse.to_bytes()) == sparse


@FAST
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=400), st.integers(9, 24))
def test_serialization_roundtrip(counts: list[int], precision: int) -> None:
    m = CategoricalModel.from_counts(counts, precision)
    m2 = CategoricalModel.from_bytes(m.to_bytes())
    assert m2 == m and m2.fingerprint() == m.fingerprint()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_from_bytes_garbage_raises_corrupted(data: bytes) -> None:
    try:
        m = CategoricalModel.from_bytes(data)
    except CorruptedSectionError:
        return
    assert int(m.freqs.astype(np.int64).sum()) == 2**m.precision  # rare: garbage that is a valid table


def test_from_bytes_flipped_and_truncated() -> None:
    b = CategoricalModel.from_counts([5, 0, 3, 100, 7]).to_bytes()
    for cut in range(len(b)):
        with pytest.raises(CorruptedSectionError):
            CategoricalModel.from_bytes(b[:cut])
    with pytest.raises(CorruptedSectionError):
        CategoricalModel.from_bytes(b + b"\x00")
    with pytest.raises(CorruptedSectionError):
        CategoricalModel.from_bytes(bytes([9]) + b[1:])
    with pytest.raises(CorruptedSectionError):
        CategoricalModel.from_bytes(b"\x01\x10" + b"\xff" * 20)


# ------------------------------------------------------------------ coder


def test_coder_uses_our_table_exactly() -> None:
    # f = 1 at precision 24 must cost exactly 24 bits; with the naive f / 2**P hand-off it costs 23.
    m = CategoricalModel(np.array([1, 2**24 - 3, 1, 1], dtype=np.uint32), 24)
    enc = Encoder()
    enc.encode_categorical(np.full(1000, 2), m)
    assert 24000 <= enc.num_bits() <= 24000 + 64


def test_golden_bitstream() -> None:
    m = CategoricalModel.from_counts([5, 0, 3, 100, 7])
    data = encode_symbols([3, 3, 0, 4, 2, 3, 3, 1, 3], m)
    assert data.hex() == GOLDEN_STREAM
    assert decode_symbols(data, m, 9).tolist() == [3, 3, 0, 4, 2, 3, 3, 1, 3]


GOLDEN_STREAM = "9a7d3e29"


@FAST
@given(st.data())
def test_categorical_roundtrip_property(data: st.DataObject) -> None:
    counts = data.draw(st.lists(st.integers(0, 1000), min_size=1, max_size=64))
    precision = data.draw(st.integers(6, 24))
    n = len(counts)
    if n > 2**precision:
        precision = 24
    m = CategoricalModel.from_counts(counts, precision)
    symbols = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=300)), dtype=np.int64)
    out = decode_symbols(encode_symbols(symbols, m), m, symbols.size)
    assert np.array_equal(out, symbols)


def test_trailing_zero_bytes_dropped_safely() -> None:
    m = CategoricalModel.from_counts([50, 30, 15, 5])
    rng = np.random.default_rng(0)
    dropped = 0
    for _ in range(300):
        s = rng.integers(0, 4, size=int(rng.integers(1, 40)))
        enc = Encoder()
        enc.encode_categorical(s, m)
        raw = enc._enc.get_compressed().astype("<u4").tobytes()
        data = enc.to_bytes()
        dropped += len(raw) - len(data)
        assert raw.startswith(data) and not raw[len(data) :].strip(b"\x00")
        assert np.array_equal(decode_symbols(data, m, s.size), s)  # includes finish()
    assert dropped > 0


def test_one_symbol_alphabet_costs_nothing() -> None:
    m = CategoricalModel.uniform(1)
    assert encode_symbols([0, 0, 0], m) == b""
    assert decode_symbols(b"", m, 3).tolist() == [0, 0, 0]


@pytest.mark.parametrize("n", [1, 2, 3, 255, 2**24 - 1, 2**24, 2**24 + 7, 2**32])
def test_uniform_roundtrip(n: int) -> None:
    rng = np.random.default_rng(n % 1000)
    v = rng.integers(0, n, size=500, dtype=np.int64)
    v[:2] = [0, n - 1]
    enc = Encoder()
    enc.encode_uniform(v, n)
    dec = Decoder(enc.to_bytes())
    assert np.array_equal(dec.decode_uniform(n, 500), v)
    dec.finish()


@pytest.mark.parametrize("which", ["gauss", "laplace"])
def test_parametric_roundtrip_with_escapes(which: str, request: pytest.FixtureRequest) -> None:
    table = request.getfixturevalue(which)
    rng = np.random.default_rng(3)
    scales = np.exp(rng.uniform(np.log(0.05), np.log(400), size=5000))
    idx = table.scale_index(scales)
    r = np.round(rng.normal(0, scales)).astype(np.int64)
    extreme = [2**31 - 1, -(2**31), 0, 1, -1, 65536, -65537, 2**17 + 3, 10**9, -(10**9)]
    r[: len(extreme)] = extreme
    idx[: len(extreme)] = 0  # smallest tail: all but 0, +-1 escape
    enc = Encoder()
    (enc.encode_gaussian if which == "gauss" else enc.encode_laplace)(r, idx, table)
    dec = Decoder(enc.to_bytes())
    out = (dec.decode_gaussian if which == "gauss" else dec.decode_laplace)(idx, table)
    dec.finish()
    assert np.array_equal(out, r)


def test_parametric_rate_close_to_ideal(gauss: QuantizedGaussianTable) -> None:
    rng = np.random.default_rng(4)
    scales = np.exp(rng.uniform(np.log(0.2), np.log(50), size=20000))
    idx = gauss.scale_index(scales)
    r = np.round(rng.normal(0, gauss.scales[idx])).astype(np.int64)
    enc = Encoder()
    enc.encode_parametric(r, idx, gauss)
    ideal = gauss.ideal_bits(r, idx)
    assert enc.num_bits() <= ideal * 1.01 + 64


@FAST
@given(st.data())
def test_mixed_stream_property(data: st.DataObject) -> None:
    gauss, laplace = _tables()
    calls = data.draw(st.lists(st.sampled_from(["cat", "uni", "gauss", "laplace"]), max_size=6))
    enc = Encoder()
    expected = []
    for kind in calls:
        size = data.draw(st.integers(0, 40))
        if kind == "cat":
            counts = data.draw(st.lists(st.integers(0, 50), min_size=2, max_size=20))
            m = CategoricalModel.from_counts(counts)
            s = np.array(data.draw(st.lists(st.integers(0, len(counts) - 1), min_size=size, max_size=size)))
            enc.encode_categorical(s, m)
            expected.append((kind, m, s))
        elif kind == "uni":
            n = data.draw(st.integers(1, 2**32))
            s = np.array(
                data.draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size)), dtype=np.int64
            )
            enc.encode_uniform(s, n)
            expected.append((kind, n, s))
        else:
            table = gauss if kind == "gauss" else laplace
            vals = st.integers(-(2**31), 2**31 - 1) | st.integers(-20, 20)
            r = np.array(data.draw(st.lists(vals, min_size=size, max_size=size)), dtype=np.int64)
            idx = np.array(
                data.draw(st.lists(st.integers(0, 63), min_size=size, max_size=size)), dtype=np.int64
            )
            enc.encode_parametric(r, idx, table)
            expected.append((kind, (table, idx), r))
    dec = Decoder(enc.to_bytes())
    for kind, arg, s in expected:
        if kind == "cat":
            out = dec.decode_categorical(arg, s.size)
        elif kind == "uni":
            out = dec.decode_uniform(arg, s.size)
        else:
            out = dec.decode_parametric(arg[1], arg[0])
        assert np.array_equal(out, s)
    dec.finish()


_TABLES: list = []


def _tables() -> tuple[QuantizedGaussianTable, QuantizedLaplaceTable]:
    if not _TABLES:
        _TABLES.extend([QuantizedGaussianTable(), QuantizedLaplaceTable()])
    return _TABLES[0], _TABLES[1]


# ------------------------------------------------------------------ parametric tables


def test_default_table_fingerprints_pinned(
    gauss: QuantizedGaussianTable, laplace: QuantizedLaplaceTable
) -> None:
    # Changing the grid, tails, pmf code or the integerisation changes these: do it on purpose only.
    assert gauss.fingerprint() == "aaff32e59b09f0d3"
    assert laplace.fingerprint() == "8a865ee0f191854d"
    assert QuantizedGaussianTable().fingerprint() == gauss.fingerprint()
    assert QuantizedGaussianTable(num_scales=32).fingerprint() != gauss.fingerprint()


def test_default_gaussian_tables_are_stored_not_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    import math

    from semzip.entropy import models

    computed = QuantizedGaussianTable(stored=False)  # libm's erfc, as every archive so far was coded with
    assert computed.fingerprint() == models.DEFAULT_GAUSSIAN_FINGERPRINT
    models._stored_gaussian.cache_clear()
    monkeypatch.setattr(math, "erfc", None)  # the default grid must not need libm at all
    stored = QuantizedGaussianTable()
    assert stored.fingerprint() == computed.fingerprint()
    assert np.array_equal(stored.boundaries, computed.boundaries) and np.array_equal(stored.tails, computed.tails)
    assert all(np.array_equal(a, b) for a, b in zip(stored.tables, computed.tables))
    with pytest.raises(TypeError):  # any other grid is still computed (and relies on its fingerprint check)
        QuantizedGaussianTable(num_scales=32)


def test_damaged_stored_gaussian_table_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from semzip.entropy import models

    arrays = QuantizedGaussianTable(stored=False).to_arrays()
    arrays["deltas"] = arrays["deltas"].copy()
    arrays["deltas"][100] += 1
    np.savez_compressed(tmp_path / "g.npz", **arrays)
    monkeypatch.setattr(models, "DEFAULT_GAUSSIAN_FILE", tmp_path / "g.npz")
    models._stored_gaussian.cache_clear()
    try:
        with pytest.raises(CorruptedSectionError, match="fingerprint"):
            QuantizedGaussianTable()
    finally:
        models._stored_gaussian.cache_clear()


def test_tables_are_valid(gauss: QuantizedGaussianTable) -> None:
    assert gauss.scales[0] == pytest.approx(0.11) and gauss.scales[-1] == pytest.approx(256.0)
    for k, tbl in enumerate(gauss.tables):
        assert tbl.size == 2 * gauss.tails[k] + 2
        assert int(tbl.astype(np.int64).sum()) == 2**gauss.precision
        assert int(tbl.min()) >= 1
        # symmetric around 0 up to the one-unit tie-breaks of the largest-remainder step
        assert np.abs(tbl[:-1].astype(np.int64) - tbl[-2::-1]).max() <= 1
    m = gauss.model(10)
    assert m.num_symbols == 2 * gauss.tails[10] + 2


def test_scale_index(gauss: QuantizedGaussianTable) -> None:
    s = gauss.scales
    assert np.array_equal(gauss.scale_index(s), np.arange(gauss.num_scales))
    assert gauss.scale_index([0.0, -1.0, 1e-9, 1e9, np.inf]).tolist() == [0, 0, 0, 63, 63]
    assert gauss.scale_index(s[5] * 1.01).item() == 5
    mid = np.sqrt(s[5] * s[6])
    assert gauss.scale_index([mid * 0.999, mid * 1.001]).tolist() == [5, 6]
    with pytest.raises(InvalidInputError):
        gauss.scale_index([1.0, np.nan])


# ------------------------------------------------------------------ errors and corruption


def test_encode_errors(gauss: QuantizedGaussianTable, laplace: QuantizedLaplaceTable) -> None:
    m = CategoricalModel.from_counts([1, 2, 3])
    enc = Encoder()
    with pytest.raises(InvalidInputError, match=r"symbols\[1\] = 3"):
        enc.encode_categorical([0, 3], m)
    with pytest.raises(InvalidInputError):
        enc.encode_categorical([-1], m)
    with pytest.raises(InvalidInputError, match="integer"):
        enc.encode_categorical(np.array([0.0, 1.0]), m)
    with pytest.raises(InvalidInputError):
        enc.encode_uniform([5], 5)
    with pytest.raises(InvalidInputError):
        enc.encode_uniform([0], 2**32 + 1)
    with pytest.raises(InvalidInputError, match="same size"):
        enc.encode_parametric([1, 2], [0], gauss)
    with pytest.raises(InvalidInputError, match="int32"):
        enc.encode_parametric([2**31], [0], gauss)
    with pytest.raises(InvalidInputError, match="scale grid"):
        enc.encode_parametric([1], [64], gauss)
    with pytest.raises(InvalidInputError):
        enc.encode_gaussian([1], [0], laplace)
    with pytest.raises(InvalidInputError):
        enc.encode_categorical([0], gauss)  # type: ignore[arg-type]
    # Failed calls left nothing behind: the stream is still empty.
    assert enc.to_bytes() == b""


def test_finish_detects_leftover_data() -> None:
    m = CategoricalModel.from_counts([1, 1, 1, 1])
    data = encode_symbols(np.arange(1000) % 4, m)
    dec = Decoder(data)
    dec.decode_categorical(m, 10)
    with pytest.raises(EntropyDecodeError):
        dec.finish()
    with pytest.raises(EntropyDecodeError):
        decode_symbols(data, m, 10)


def test_garbage_is_mostly_refused_and_never_crashes() -> None:
    """200 seeded garbage streams (0-200 bytes, 0-500 symbols): the end-of-stream check refuses almost all of
    them, a few happen to be valid streams of that length, none raises anything but our error."""
    gauss, _ = _tables()
    m = CategoricalModel.from_counts([7, 1, 0, 30, 2])
    inputs = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        data = rng.integers(0, 256, int(rng.integers(0, 201)), dtype=np.uint8).tobytes()
        inputs.append((data, int(rng.integers(0, 501))))

    def symbols(x):
        data, n = x
        out = decode_symbols(data, m, n)
        assert out.shape == (n,) and (out.size == 0 or (out.min() >= 0 and out.max() < 5))

    def parametric(x):
        data, n = x
        dec = Decoder(data)
        r = dec.decode_parametric(np.arange(n) % 64, gauss)
        assert r.shape == (n,)
        dec.decode_uniform(2**32, 3)
        dec.finish()

    for call in (symbols, parametric):
        counts = tally(call, inputs)
        assert not crashes(counts), counts
        assert set(counts) <= {"decoded", "EntropyDecodeError"}, counts
        assert counts["EntropyDecodeError"] >= 180 and counts["decoded"] >= 1, (call.__name__, counts)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 500))
def test_garbage_decodes_or_raises_ours(data: bytes, n: int) -> None:
    gauss, _ = _tables()
    m = CategoricalModel.from_counts([7, 1, 0, 30, 2])
    try:
        out = decode_symbols(data, m, n)
        assert out.shape == (n,) and (out.size == 0 or (out.min() >= 0 and out.max() < 5))
    except EntropyDecodeError:
        pass
    dec = Decoder(data)
    try:
        r = dec.decode_parametric(np.arange(n) % 64, gauss)
        assert r.shape == (n,) and (r.size == 0 or (r.min() >= -(2**31) and r.max() < 2**31))
        dec.decode_uniform(2**32, 3)
        dec.finish()
    except EntropyDecodeError:
        pass


def test_truncated_stream_is_well_defined(gauss: QuantizedGaussianTable) -> None:
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 64, 2000)
    r = np.round(rng.normal(0, gauss.scales[idx])).astype(np.int64)
    enc = Encoder()
    enc.encode_parametric(r, idx, gauss)
    data = enc.to_bytes()
    cuts = (1, len(data) // 4, len(data) // 2, 3 * len(data) // 4, len(data) - 1)

    def decode(cut: int, finish: bool) -> None:
        dec = Decoder(data[:cut])
        out = dec.decode_parametric(idx, gauss)
        assert out.shape == r.shape and not np.array_equal(out, r)  # never the original, silently
        if finish:
            dec.finish()

    # decoding alone: the 1-byte stream is refused at once, the longer ones decode to other values...
    assert tally(lambda c: decode(c, False), cuts) == {"EntropyDecodeError": 1, "decoded": 4}
    # ...and the end-of-stream check refuses every truncation
    assert tally(lambda c: decode(c, True), cuts) == {"EntropyDecodeError": 5}


def test_decoder_input_validation() -> None:
    with pytest.raises(InvalidInputError):
        Decoder("abc")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Decoder(b"").decode_categorical(CategoricalModel.uniform(3), -1)
