"""Baseline embedding-collection codecs (fp16, scalar, product and k-means quantisation) for benchmarks.

Each baseline writes a real semzip container (``semzip.format.pack``: JSON header, typed sections, CRC32s)
with the same entropy layer as the collection codec (:mod:`semzip.entropy`: integer categorical tables
learned from the collection, stored once, range-coded item blocks indexed for random access), then decodes
it back from those bytes. So rates are real file sizes, header included, directly comparable with
:class:`semzip.codecs.collection.CollectionCodec`.

Every function returns a :class:`BaselineResult` ``(total_bytes, dictionary_bytes, codes_bytes, decoded)``:
``dictionary_bytes`` is what is stored once (codebooks and entropy tables: every BLOB section's record),
``codes_bytes`` the per-item part (the ``index`` and ``items`` sections' records); the rest is the header.
Codebooks are stored as fp16 values whose two bytes are entropy-coded with per-byte-position categorical
tables (:func:`encode_fp16`), the same scheme as the fp16 baseline.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from semzip._version import __version__
from semzip.codecs.collection import pack_models, unpack_models
from semzip.codecs.embeddings import ScalarQuantCodec
from semzip.entropy import CategoricalModel, Decoder, Encoder
from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.format import Container, Header, SectionType, pack

__all__ = [
    "ArchiveSizes",
    "BaselineResult",
    "archive_sizes",
    "decode_fp16",
    "encode_fp16",
    "fp16_baseline",
    "kmeans_baseline",
    "pq_baseline",
    "sq_baseline",
]


class BaselineResult(NamedTuple):
    """Real byte counts of a baseline archive and the embeddings decoded from it."""

    total_bytes: int
    dictionary_bytes: int
    codes_bytes: int
    decoded: np.ndarray


class ArchiveSizes(NamedTuple):
    """How a packed archive's bytes split: header, stored-once sections, per-item sections."""

    total: int
    header: int
    dictionary: int
    codes: int


def archive_sizes(data: bytes) -> ArchiveSizes:
    """Split a packed container's real size: header, BLOB sections (stored once), index + items (codes)."""
    c = Container.from_bytes(data)
    codes = sum(s.record_size for s in c.sections if s.name in ("index", "items"))
    once = sum(s.record_size for s in c.sections if s.type == SectionType.BLOB and s.name != "names")
    names = sum(s.record_size for s in c.sections if s.name == "names")
    assert c.header_size + once + codes + names == len(data), "sections do not add up to the file size"
    return ArchiveSizes(len(data), c.header_size, once, codes + names)


def _as_unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InvalidInputError(f"expected a non-empty (n, d) embedding matrix, got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1).astype(np.float32)


def _blocks(n: int, block_size: int):
    for start in range(0, n, block_size):
        yield start, min(n, start + block_size)


def _result(
    header: Header, blobs: dict[str, bytes], blocks: list[tuple[int, bytes]], decode
) -> BaselineResult:
    data = pack(header, blobs, blocks)
    sizes = archive_sizes(data)
    decoded = decode(Container.from_bytes(data))
    return BaselineResult(sizes.total, sizes.dictionary, sizes.codes, decoded)


def _header(codec: str, **params) -> Header:
    return Header(codec=codec, params=params, writer=f"semzip {__version__}")


# ------------------------------------------------------------------------------------------ fp16 bytes
def _fp16_bytes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.ascontiguousarray(values.astype("<f2")).view(np.uint8).reshape(-1, 2)
    return b[:, 0].astype(np.int64), b[:, 1].astype(np.int64)


def _fp16_from_bytes(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    b = np.stack([lo, hi], axis=1).astype(np.uint8)
    return b.view("<f2").reshape(-1).astype(np.float32)


def _pack_models(models: list[CategoricalModel]) -> bytes:
    """A count (u32), then the models as the collection codec stores its own (:func:`pack_models`)."""
    return struct.pack("<I", len(models)) + pack_models(models)


def _unpack_models(data: bytes) -> tuple[list[CategoricalModel], int]:
    """Inverse of :func:`_pack_models`: the models and the bytes they take."""
    if len(data) < 4:
        raise CorruptedSectionError("baseline entropy models are truncated")
    (k,) = struct.unpack_from("<I", data, 0)
    models, used = unpack_models(data[4:], k, "baseline entropy models")
    return models, 4 + used


def _byte_models(lo: np.ndarray, hi: np.ndarray) -> list[CategoricalModel]:
    return [CategoricalModel.from_counts(np.bincount(s, minlength=256)) for s in (lo, hi)]


def encode_fp16(values: np.ndarray) -> bytes:
    """fp16 values, their low and high bytes each coded under a 256-symbol table learned from them."""
    lo, hi = _fp16_bytes(np.asarray(values).ravel())
    models = _byte_models(lo, hi)
    enc = Encoder()
    enc.encode_categorical(lo, models[0])
    enc.encode_categorical(hi, models[1])
    return _pack_models(models) + enc.to_bytes()


def decode_fp16(data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`encode_fp16`: ``count`` float32 values (exactly the fp16-rounded input)."""
    (m_lo, m_hi), pos = _unpack_models(data)
    dec = Decoder(data[pos:])
    lo = dec.decode_categorical(m_lo, count)
    hi = dec.decode_categorical(m_hi, count)
    dec.finish()
    return _fp16_from_bytes(lo, hi)


# ------------------------------------------------------------------------------------------ baselines
def fp16_baseline(X: np.ndarray, block_size: int = 256) -> BaselineResult:
    """Each embedding as d fp16 values; low/high bytes entropy-coded under two tables learned from the set."""
    X = _as_unit(X)
    n, d = X.shape
    lo, hi = _fp16_bytes(X)
    lo, hi = lo.reshape(n, d), hi.reshape(n, d)
    models = _byte_models(lo.ravel(), hi.ravel())
    blocks = []
    for a, b in _blocks(n, block_size):
        enc = Encoder()
        enc.encode_categorical(lo[a:b].ravel(), models[0])
        enc.encode_categorical(hi[a:b].ravel(), models[1])
        blocks.append((b - a, enc.to_bytes()))
    header = _header("baseline-fp16", dim=d, block_size=block_size)

    def decode(c: Container) -> np.ndarray:
        (m_lo, m_hi), _ = _unpack_models(c.read("models"))
        rows = []
        for info, payload in c.iter_blocks():
            dec = Decoder(payload)
            a = dec.decode_categorical(m_lo, info.n_items * d)
            b = dec.decode_categorical(m_hi, info.n_items * d)
            dec.finish()
            rows.append(_fp16_from_bytes(a, b).reshape(-1, d))
        return np.concatenate(rows)

    return _result(header, {"models": _pack_models(models)}, blocks, decode)


def sq_baseline(X: np.ndarray, bits: int = 8, block_size: int = 256) -> BaselineResult:
    """semzip's own ``sq`` codec (uniform scalar quantisation per dimension, one table per archive)."""
    codec = ScalarQuantCodec(bits=bits, block_size=block_size)
    enc = codec.compress(_as_unit(X))
    return _result(
        enc.header, enc.blobs, enc.blocks, lambda c: ScalarQuantCodec.from_header(c.header).decompress(c)
    )


def _nearest(X: np.ndarray, C: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the nearest row of ``C`` (squared L2) for each row of ``X``, in chunks."""
    c2 = np.sum(C * C, axis=1)
    out = np.empty(len(X), dtype=np.int64)
    for a in range(0, len(X), chunk):
        out[a : a + chunk] = np.argmin(c2[None, :] - 2.0 * (X[a : a + chunk] @ C.T), axis=1)
    return out


def _index_codes(codes: np.ndarray, alphabet: int, block_size: int):
    """Per-column categorical tables over ``alphabet`` and the coded item blocks of an (n, m) index array."""
    n, m = codes.shape
    models = [CategoricalModel.from_counts(np.bincount(codes[:, j], minlength=alphabet)) for j in range(m)]
    blocks = []
    for a, b in _blocks(n, block_size):
        enc = Encoder()
        for j in range(m):
            enc.encode_categorical(codes[a:b, j], models[j])
        blocks.append((b - a, enc.to_bytes()))
    return models, blocks


def _decode_index_codes(c: Container, models: list[CategoricalModel]) -> np.ndarray:
    parts = []
    for info, payload in c.iter_blocks():
        dec = Decoder(payload)
        parts.append(np.stack([dec.decode_categorical(mj, info.n_items) for mj in models], axis=1))
        dec.finish()
    return np.concatenate(parts)


def pq_baseline(
    X: np.ndarray, m: int, nbits: int = 8, block_size: int = 256, seed: int = 0, niter: int = 20
) -> BaselineResult:
    """Product quantisation (faiss): ``m`` sub-quantisers of ``2**nbits`` centroids each.

    Codebooks (``2**nbits x d`` values in all) are stored once as entropy-coded fp16; items are assigned
    to the fp16 codebooks the decoder sees; each sub-quantiser's indices have their own categorical table.
    """
    import faiss

    X = _as_unit(X)
    n, d = X.shape
    if d % m:
        raise InvalidInputError(f"d={d} is not divisible by m={m}")
    ksub, dsub = 2**nbits, d // m
    if n < ksub:
        raise InvalidInputError(f"{n} items cannot train {ksub} centroids per sub-quantiser")
    pq = faiss.ProductQuantizer(d, m, nbits)
    pq.cp.niter = niter
    pq.cp.seed = seed
    pq.train(X)
    cents = faiss.vector_to_array(pq.centroids).reshape(m, ksub, dsub)
    cents16 = cents.astype(np.float16).astype(np.float32)
    codes = np.stack([_nearest(X[:, j * dsub : (j + 1) * dsub], cents16[j]) for j in range(m)], axis=1)
    models, blocks = _index_codes(codes, ksub, block_size)
    blobs = {"codebook": encode_fp16(cents16), "models": _pack_models(models)}
    header = _header("baseline-pq", dim=d, m=m, nbits=nbits, block_size=block_size, codebook="fp16")

    def decode(c: Container) -> np.ndarray:
        cb = decode_fp16(c.read("codebook"), m * ksub * dsub).reshape(m, ksub, dsub)
        mods, _ = _unpack_models(c.read("models"))
        q = _decode_index_codes(c, mods)
        return np.concatenate([cb[j][q[:, j]] for j in range(m)], axis=1)

    return _result(header, blobs, blocks, decode)


def kmeans_baseline(
    X: np.ndarray, k: int, block_size: int = 256, seed: int = 0, niter: int = 20
) -> BaselineResult:
    """Nearest k-means centroid (faiss, spherical): centroids stored once (entropy-coded fp16), one index per item."""
    import faiss

    X = _as_unit(X)
    n, d = X.shape
    if k > n:
        raise InvalidInputError(f"k={k} exceeds the {n} items")
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, spherical=True, verbose=False)
    km.train(X)
    cents16 = km.centroids.astype(np.float16).astype(np.float32)
    codes = _nearest(X, cents16)[:, None]
    models, blocks = _index_codes(codes, k, block_size)
    blobs = {"codebook": encode_fp16(cents16), "models": _pack_models(models)}
    header = _header("baseline-kmeans", dim=d, k=k, block_size=block_size, codebook="fp16")

    def decode(c: Container) -> np.ndarray:
        cb = decode_fp16(c.read("codebook"), k * d).reshape(k, d)
        mods, _ = _unpack_models(c.read("models"))
        return cb[_decode_index_codes(c, mods)[:, 0]]

    return _result(header, blobs, blocks, decode)
