"""semzip.eval.baselines_embeddings: the fp16, sq, PQ and k-means baselines the collection benchmark compares
against. Each writes a real container and decodes it back; what is checked is what the benchmark reports:
the decoded embeddings (exactly the quantiser's output), the rate (close to the empirical entropy of the
coded symbols) and how the bytes split between what is stored once and what each item costs.

faiss only trains the PQ and k-means codebooks. Where it is not installed a stand-in with fixed codebooks
(the first rows) takes its place, so everything the baselines do themselves still runs; with faiss, the real
training is checked too.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from semzip.codecs.embeddings import ScalarQuantCodec
from semzip.errors import EntropyDecodeError, InvalidInputError
from semzip.eval import baselines_embeddings as B
from semzip.format import Container, pack


def _data(n: int = 300, d: int = 16, seed: int = 0) -> np.ndarray:
    """Gaussian rows with norm about 3*sqrt(d): the baselines code the unit-normalised rows."""
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) * 3


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _entropy_bytes(symbols: np.ndarray, alphabet: int) -> float:
    """What an ideal coder with the symbols' own frequencies spends on them, in bytes."""
    p = np.bincount(symbols, minlength=alphabet) / len(symbols)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) * len(symbols) / 8


def _header_bytes(r: B.BaselineResult) -> int:
    return r.total_bytes - r.dictionary_bytes - r.codes_bytes


# ------------------------------------------------------------------------------------------ sizes, fp16


def test_archive_sizes_split_a_real_archive():
    x = _unit(_data(40, 8))
    enc = ScalarQuantCodec(bits=6, block_size=16).compress(x)
    plain = pack(enc.header, enc.blobs, enc.blocks)
    named = pack(enc.header, enc.blobs, enc.blocks, [f"item-{i:03d}" for i in range(40)])
    a, b = B.archive_sizes(plain), B.archive_sizes(named)
    for data, s in ((plain, a), (named, b)):
        assert s.total == len(data) == s.header + s.dictionary + s.codes
        assert s.header == Container.from_bytes(data).header_size
    # the table is stored once: more than its payload (the record adds type, name, length, CRC), the same with
    # or without names; names are a per-item cost
    assert a.dictionary == b.dictionary > len(Container.from_bytes(plain).read("model"))
    assert b.codes > a.codes


def test_fp16_bytes_round_trip_exactly():
    v = np.concatenate([_data(50, 8).ravel(), [0.0, -0.0, 65504.0, 1e-7, np.inf, -np.inf]]).astype(np.float32)
    out = B.decode_fp16(B.encode_fp16(v), v.size)
    want = v.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(out, want)
    assert np.signbit(out[-5]) and out.dtype == np.float32
    with pytest.raises(EntropyDecodeError, match="data left"):
        B.decode_fp16(B.encode_fp16(v), v.size - 1)  # the wrong count is refused, not misread


def test_fp16_baseline_decodes_the_rounded_unit_rows_at_their_entropy():
    x = _data()
    r = B.fp16_baseline(x, block_size=64)
    u = _unit(x)
    np.testing.assert_array_equal(r.decoded, u.astype(np.float16).astype(np.float32))
    b = np.ascontiguousarray(u.astype("<f2")).view(np.uint8).reshape(-1, 2)
    ideal = _entropy_bytes(b[:, 0], 256) + _entropy_bytes(b[:, 1], 256)  # 7986 B for 300 x 16
    assert ideal <= r.codes_bytes <= 1.02 * ideal  # 5 coded blocks and their index: < 2 % over the entropy
    assert r.codes_bytes < 0.85 * 2 * x.size  # the exponent bytes are cheap: well under 2 bytes a value
    assert 300 < r.dictionary_bytes < 1200  # two 256-symbol tables
    assert 0 < _header_bytes(r) < 300
    # the scale of the input does not matter: rows are normalised first (x4 is exact in binary floating point)
    np.testing.assert_array_equal(B.fp16_baseline(4 * x, block_size=64).decoded, r.decoded)


def test_bad_inputs_are_refused():
    for bad in (np.zeros((0, 4)), np.zeros(4), np.zeros((2, 3, 4))):
        with pytest.raises(InvalidInputError, match="non-empty"):
            B.fp16_baseline(bad)


# ------------------------------------------------------------------------------------------ sq


def test_sq_baseline_is_the_sq_codec_and_more_bits_cost_more():
    x = _data()
    u = _unit(x)
    results = {bits: B.sq_baseline(x, bits=bits, block_size=64) for bits in (4, 8)}
    for bits, r in results.items():
        enc = ScalarQuantCodec(bits=bits, block_size=64).compress(u)
        data = pack(enc.header, enc.blobs, enc.blocks)
        assert r.total_bytes == len(data)
        c = Container.from_bytes(data)
        np.testing.assert_array_equal(r.decoded, ScalarQuantCodec.from_header(c.header).decompress(c))
    err = {bits: float(np.abs(r.decoded - u).max()) for bits, r in results.items()}
    assert err[8] < 0.01 < err[4] < 0.1
    assert results[4].total_bytes < 0.6 * results[8].total_bytes
    assert results[4].dictionary_bytes < results[8].dictionary_bytes  # 16 levels' table vs 256


# ------------------------------------------------------------------------------------------ PQ, k-means


def _fake_faiss() -> types.ModuleType:
    """faiss's training replaced by fixed codebooks: the first rows of what it is trained on."""
    faiss = types.ModuleType("faiss")
    faiss.trained = []

    class ProductQuantizer:
        def __init__(self, d, m, nbits):
            self.d, self.m, self.ksub = d, m, 2**nbits
            self.cp = types.SimpleNamespace(niter=None, seed=None)

        def train(self, x):
            faiss.trained.append(("pq", np.array(x), self.cp.niter, self.cp.seed))
            dsub = self.d // self.m
            self.centroids = np.stack([x[: self.ksub, j * dsub : (j + 1) * dsub] for j in range(self.m)]).ravel()

    class Kmeans:
        def __init__(self, d, k, niter, seed, spherical, verbose):
            self.k, self.args = k, (niter, seed, spherical, verbose)

        def train(self, x):
            faiss.trained.append(("kmeans", np.array(x), *self.args))
            self.centroids = _unit(x[: self.k])

    faiss.ProductQuantizer, faiss.Kmeans = ProductQuantizer, Kmeans
    faiss.vector_to_array = np.asarray
    return faiss


@pytest.fixture
def faiss(monkeypatch):
    fake = _fake_faiss()
    monkeypatch.setitem(sys.modules, "faiss", fake)
    return fake


def _nearest_brute(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.argmin(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)


def test_pq_baseline_codes_each_item_to_its_nearest_fp16_centroids(faiss):
    x = _data(300, 16)
    u = _unit(x)
    m, nbits = 4, 5  # 4 sub-quantisers of 32 centroids over 4 dimensions each
    r = B.pq_baseline(x, m=m, nbits=nbits, block_size=64, seed=3, niter=7)
    ((kind, trained, niter, seed),) = faiss.trained
    assert kind == "pq" and (niter, seed) == (7, 3)
    np.testing.assert_allclose(trained, u, atol=1e-6)  # trained on the unit rows
    codes, want = [], []
    for j in range(m):
        cb = u[:32, 4 * j : 4 * j + 4].astype(np.float16).astype(np.float32)  # what the decoder holds
        q = _nearest_brute(u[:, 4 * j : 4 * j + 4], cb)
        codes.append(q)
        want.append(cb[q])
    np.testing.assert_array_equal(r.decoded, np.concatenate(want, axis=1))
    ideal = sum(_entropy_bytes(q, 32) for q in codes)
    assert ideal <= r.codes_bytes <= 1.05 * ideal + 80  # per-column tables; 5 blocks, their index
    # stored once: 32 x 16 fp16 values and the byte tables (coded near their entropy), four index tables
    assert 0.5 * 2 * 32 * 16 < r.dictionary_bytes < 2 * 32 * 16 + 4 * 100 + 1200
    assert float(np.mean((r.decoded - u) ** 2)) < float(np.mean(u**2))  # better than coding nothing
    with pytest.raises(InvalidInputError, match="not divisible"):
        B.pq_baseline(x, m=5)
    with pytest.raises(InvalidInputError, match="cannot train 256"):
        B.pq_baseline(x[:100], m=4)


def test_kmeans_baseline_codes_each_item_to_its_nearest_fp16_centroid(faiss):
    x = _data(300, 16)
    u = _unit(x)
    r = B.kmeans_baseline(x, k=20, block_size=64, seed=4, niter=9)
    ((kind, trained, *args),) = faiss.trained
    assert kind == "kmeans" and args == [9, 4, True, False]
    np.testing.assert_allclose(trained, u, atol=1e-6)
    cb = _unit(u[:20]).astype(np.float16).astype(np.float32)
    q = _nearest_brute(u, cb)
    np.testing.assert_array_equal(r.decoded, cb[q])
    assert set(q[:20]) == set(range(20))  # each centroid is its own row's nearest
    ideal = _entropy_bytes(q, 20)
    assert ideal <= r.codes_bytes <= 1.05 * ideal + 80  # 159 B of entropy, 224 B coded
    with pytest.raises(InvalidInputError, match="exceeds"):
        B.kmeans_baseline(x[:10], k=20)


def test_real_faiss_training_beats_the_fixed_codebooks(monkeypatch):
    pytest.importorskip("faiss")
    x = _data(600, 16)
    u = _unit(x)
    pq = B.pq_baseline(x, m=4, nbits=4, block_size=128)
    km = B.kmeans_baseline(x, k=32, block_size=128)
    for r in (pq, km):
        assert r.decoded.shape == u.shape
        assert r.total_bytes == r.dictionary_bytes + r.codes_bytes + _header_bytes(r)
    monkeypatch.setitem(sys.modules, "faiss", _fake_faiss())
    pq_fixed = B.pq_baseline(x, m=4, nbits=4, block_size=128)
    assert np.mean((pq.decoded - u) ** 2) < np.mean((pq_fixed.decoded - u) ** 2)
