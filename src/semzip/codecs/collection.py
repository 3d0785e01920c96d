"""Collection codec (after SMIC, Bachard & Maugey): a learned sparse dictionary over a collection's embeddings.

The archive holds, once, a dictionary of ``n_atoms`` unit-norm atoms (uniformly quantised, entropy-coded) and
the entropy models of the per-item symbols; per item it holds a sparse code:

    k        number of atoms (1..sparsity), coded as k-1 under a categorical learned from the collection
    first    index of the atom OMP chose first (the dominant concept), categorical over atom usage
    sign     sign of that atom's weight (categorical: almost always positive)
    rest     the other k-1 atom indices, sorted ascending, same categorical as ``first``
    ratios   their weights divided by the first atom's weight, uniformly quantised (step ``weight_step``)

Embeddings are compared by direction only (CLIP similarity is a cosine), so the first weight's magnitude is
never sent: the decoder rebuilds ``sign * (atom[first] + sum ratio_j * atom[rest_j])`` and normalises it.
Items are coded in blocks (one range-coder stream each) indexed by the container for random access.

Coding a collection goes through public stages, which every engine calls (the in-memory :meth:`compress`
here, the streaming and Ray engines of :mod:`semzip.scale.stream` on shards):

    plan             n_atoms and the sparsity cap for n items (:meth:`CollectionCodec.plan`), the learner's
                     parameters (:meth:`CollectionCodec.learner_params`)
    quantize         the learned atoms -> the stored dictionary and the decoder's atoms (:meth:`quantize`)
    code             items -> integer sparse codes over the decoder's atoms (:meth:`code`)
    histograms       codes -> symbol counts (:meth:`histograms`); counts of disjoint parts add up
    fit_models       summed counts -> the entropy models (:meth:`fit_models`)
    encode_blocks    codes -> range-coded item blocks (:meth:`encode_blocks`, :meth:`decode_block` back)
    assemble         dictionary, models and fit information -> the header and the stored-once sections
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semzip._optional import require
from semzip._version import __version__
from semzip.codecs.base import Encoded
from semzip.data.embeddings import validate_embeddings
from semzip.entropy import MAX_ALPHABET, CategoricalModel, Decoder, Encoder, decode_symbols, encode_symbols
from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.format import Container, Header, ModelRef, check_container, check_header

KODAK_PIXELS = 768 * 512


def default_n_atoms(n_items: int) -> int:
    """Dictionary size used when none is given: about n/8 atoms, between 16 and 1024, and never more atoms
    than items (a folder of 3 images gets 3)."""
    return int(max(1, min(1024, max(16, n_items // 8), n_items)))


def quantize_dictionary(D: np.ndarray, atom_bits: int) -> tuple[np.ndarray, float]:
    """Uniformly quantise atoms: integer symbols in [0, 2L] and the step (L = 2**(bits-1) - 1)."""
    levels = 2 ** (atom_bits - 1) - 1
    step = float(np.abs(D).max()) / levels
    q = np.clip(np.rint(D / np.float32(step)), -levels, levels).astype(np.int64) + levels
    return q, step


def dequantize_dictionary(q: np.ndarray, step: float, atom_bits: int) -> np.ndarray:
    """The decoder's atoms: dequantised and renormalised to unit norm (float32, deterministic)."""
    levels = 2 ** (atom_bits - 1) - 1
    D = (q.astype(np.float32) - np.float32(levels)) * np.float32(step)
    norms = np.sqrt(np.sum(D * D, axis=1, dtype=np.float32), dtype=np.float32)
    return D / np.where(norms > 0, norms, np.float32(1))[:, None]


def _check_atoms(q: np.ndarray, step: float, atom_bits: int, label: str) -> None:
    """Refuse a dictionary that is not what :func:`quantize_dictionary` writes for unit atoms: the largest
    value sits on the top level, and every atom's norm is 1 within the rounding (sqrt(dim) * step / 2). A
    header whose ``dim``, ``n_atoms`` or ``atom_step`` lies about the stored values fails this."""
    levels = 2 ** (atom_bits - 1) - 1
    v = q.astype(np.float64) - levels
    if q.size and np.abs(v).max() != levels:
        raise CorruptedSectionError(f"{label}: the dictionary's values do not reach the top level of atom_bits")
    norms = np.sqrt(np.sum(v * v, axis=1)) * step
    slack = np.sqrt(q.shape[1]) * step / 2 + 1e-6
    bad = np.flatnonzero(np.abs(norms - 1) > slack)
    if bad.size:
        raise CorruptedSectionError(
            f"{label}: atom {int(bad[0])} has norm {norms[bad[0]]:.4g}, not 1: the dictionary does not match "
            "dim, n_atoms and atom_step")


@dataclass
class SparseCodes:
    """Integer sparse codes of a set of items (what the entropy coder writes)."""

    counts: np.ndarray  # (n,) atoms per item, >= 1
    first: np.ndarray  # (n,) first atom index
    sign: np.ndarray  # (n,) 0 for +, 1 for -
    rest: np.ndarray  # (sum(counts - 1),) sorted per item
    ratios: np.ndarray  # (sum(counts - 1),) quantised ratio symbols in [0, 2 * weight_levels]

    def slice(self, start: int, stop: int) -> SparseCodes:
        offsets = np.concatenate([[0], np.cumsum(self.counts - 1)])
        a, b = offsets[start], offsets[stop]
        return SparseCodes(
            self.counts[start:stop], self.first[start:stop], self.sign[start:stop], self.rest[a:b], self.ratios[a:b]
        )

    @classmethod
    def concatenate(cls, parts: Sequence[SparseCodes]) -> SparseCodes:
        """The codes of several sets of items, one after the other (no parts: no items)."""
        if not parts:
            z = np.zeros(0, np.int64)
            return cls(z, z, z, z, z)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def pack_models(models: Sequence[CategoricalModel]) -> bytes:
    """Categorical models as one byte string: each model's table, prefixed by its length (u32)."""
    parts = [m.to_bytes() for m in models]
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def unpack_models(data: bytes, count: int, what: str) -> tuple[list[CategoricalModel], int]:
    """The first ``count`` models that :func:`pack_models` wrote at the start of ``data``, and the bytes they
    take; ``what`` names them in the error a truncated string raises."""
    models, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(data):
            raise CorruptedSectionError(f"{what} are truncated")
        (n,) = struct.unpack_from("<I", data, pos)
        if pos + 4 + n > len(data):
            raise CorruptedSectionError(f"{what} are truncated")
        models.append(CategoricalModel.from_bytes(data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return models, pos


@dataclass
class EntropyModels:
    """The categorical models of the per-item symbols, learned from the collection, stored once."""

    count: CategoricalModel
    index: CategoricalModel
    ratio: CategoricalModel
    sign: CategoricalModel

    def to_bytes(self) -> bytes:
        return pack_models([self.count, self.index, self.ratio, self.sign])

    @classmethod
    def from_bytes(cls, data: bytes) -> EntropyModels:
        models, pos = unpack_models(data, 4, "collection entropy models")
        if pos != len(data):
            raise CorruptedSectionError("collection entropy models have trailing bytes")
        return cls(*models)


@dataclass
class SymbolCounts:
    """How often each symbol of each kind occurs in a set of codes: what the entropy models are fit on.

    Counts of disjoint parts of a collection add up (``a + b``) to the counts of the whole, so the streaming
    engine sums its shards' counts and fits the same models the in-memory engine fits on all the codes.
    """

    count: np.ndarray  # (sparsity,) items per number of atoms, minus one
    index: np.ndarray  # (n_atoms,) uses of each atom, first or not
    ratio: np.ndarray  # (2 * weight_levels + 1,) ratio symbols
    sign: np.ndarray  # (2,) signs of the first weight

    def __add__(self, other: SymbolCounts) -> SymbolCounts:
        return SymbolCounts(*(getattr(self, f) + getattr(other, f) for f in SymbolCounts.__dataclass_fields__))


@dataclass(frozen=True)
class CollectionPlan:
    """What a collection of ``n_items`` items is coded with: the codec's settings resolved for its size."""

    n_items: int
    n_atoms: int
    sparsity: int  # atoms per item at most: the codec's sparsity, never more than n_atoms


@dataclass
class QuantizedDictionary:
    """The learned atoms as the archive stores them and as the decoder sees them."""

    symbols: np.ndarray  # (n_atoms, dim) integer values in [0, 2 * levels]
    step: float  # the quantiser's step (``atom_step`` in the header)
    atoms: np.ndarray  # (n_atoms, dim) float32: dequantised and renormalised, what items are coded over
    blob: bytes  # the dictionary section

    @property
    def n_atoms(self) -> int:
        return int(self.symbols.shape[0])

    @property
    def dim(self) -> int:
        return int(self.symbols.shape[1])


class CollectionCodec:
    """Dictionary + sparse-code compression of an embedding collection (sklearn-like hyperparameters)."""

    name = "collection"
    decodes_to = "embeddings"

    def __init__(
        self,
        n_atoms: int | None = None,
        sparsity: int = 4,
        min_cosine: float | None = None,
        bits_per_item: float | None = None,
        atom_bits: int = 6,
        weight_step: float = 0.0625,
        weight_clip: float = 2.0,
        block_size: int = 256,
        max_epochs: int = 10,
        batch_size: int = 1024,
        random_state: int = 0,
        device: str | None = None,
        encoder: ModelRef | None = None,
        space: str = "unknown",
        pixels_per_item: int = KODAK_PIXELS,
        verbose: bool = False,
    ):
        if sparsity < 1:
            raise InvalidInputError(f"sparsity must be at least 1, got {sparsity}")
        if not 2 <= atom_bits <= 12:
            raise InvalidInputError(f"atom_bits must be between 2 and 12, got {atom_bits}")
        if not (0 < weight_step <= weight_clip < math.inf) or weight_clip / weight_step > MAX_ALPHABET // 2:
            raise InvalidInputError(
                f"need 0 < weight_step <= weight_clip and at most {MAX_ALPHABET // 2} weight steps, got "
                f"{weight_step}, {weight_clip}"
            )
        if min_cosine is not None and not -1 <= min_cosine <= 1:
            raise InvalidInputError(f"min_cosine must lie in [-1, 1], got {min_cosine}")
        if bits_per_item is not None and bits_per_item <= 0:
            raise InvalidInputError(f"bits_per_item must be positive, got {bits_per_item}")
        if block_size < 1:
            raise InvalidInputError(f"block_size must be positive, got {block_size}")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be positive, got {batch_size}")
        self.n_atoms = n_atoms
        self.sparsity = sparsity
        self.min_cosine = min_cosine
        self.bits_per_item = bits_per_item
        self.atom_bits = atom_bits
        self.weight_step = weight_step
        self.weight_clip = weight_clip
        self.block_size = block_size
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device
        self.encoder = encoder
        self.space = space
        self.pixels_per_item = pixels_per_item
        self.verbose = verbose

    @property
    def weight_levels(self) -> int:
        return math.ceil(self.weight_clip / self.weight_step)

    # ------------------------------------------------------------------------------------ plan
    def plan(self, n_items: int) -> CollectionPlan:
        """Resolve the settings for a collection of ``n_items``: the dictionary size (``n_atoms``, or the
        default for the size) and the sparsity cap; refuses more atoms than items."""
        n_atoms = self.n_atoms or default_n_atoms(n_items)
        if n_atoms > n_items:
            raise InvalidInputError(f"--n-atoms {n_atoms} exceeds the {n_items} items; use fewer atoms")
        return CollectionPlan(n_items=n_items, n_atoms=n_atoms, sparsity=min(self.sparsity, n_atoms))

    def learner_params(self, plan: CollectionPlan, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of the :class:`~semzip.sparse.DictionaryLearner` that learns ``plan``'s
        dictionary: the codec's settings, then ``overrides`` (an engine's own epochs, batches or device)."""
        params = {
            "n_atoms": plan.n_atoms, "n_nonzero": plan.sparsity, "min_cosine": self.min_cosine,
            "max_epochs": self.max_epochs, "batch_size": self.batch_size, "random_state": self.random_state,
            "device": self.device, "verbose": self.verbose,
        }
        return params | overrides

    def coding_params(self, plan: CollectionPlan) -> dict[str, Any]:
        """The parameters that fix how items are coded once the dictionary is learned (``CollectionCodec(
        **coding_params(plan))`` codes as this codec does): what a worker needs, and what identifies a run."""
        return {
            "n_atoms": plan.n_atoms, "sparsity": plan.sparsity, "min_cosine": self.min_cosine,
            "atom_bits": self.atom_bits, "weight_step": self.weight_step, "weight_clip": self.weight_clip,
            "block_size": self.block_size, "random_state": self.random_state,
        }

    # ------------------------------------------------------------------------------------ dictionary
    def quantize(self, D: np.ndarray) -> QuantizedDictionary:
        """The learned atoms ``D`` quantised (``atom_bits``), the decoder's atoms, and the dictionary section."""
        symbols, step = quantize_dictionary(D, self.atom_bits)
        return QuantizedDictionary(symbols, step, dequantize_dictionary(symbols, step, self.atom_bits),
                                   self.dictionary_blob(symbols))

    # ------------------------------------------------------------------------------------ sparse codes
    def code(self, X: np.ndarray, D: np.ndarray, k: int) -> SparseCodes:
        """OMP of unit-norm items ``X`` over the decoder's atoms ``D`` (at most ``k`` atoms each), then the
        integer symbols of each item."""
        require("torch", "torch", "sparse coding")
        from semzip.sparse import batch_omp

        idx, coef = batch_omp(X, D, n_nonzero=min(k, D.shape[0]), min_cosine=self.min_cosine, device=self.device)
        idx, coef = np.asarray(idx), np.asarray(coef, dtype=np.float64)
        valid = idx >= 0
        counts = valid.sum(1)
        if (counts == 0).any():
            raise InvalidInputError("an embedding is orthogonal to every atom; cannot code it")
        c0 = coef[:, 0]
        ratios = coef[:, 1:] / c0[:, None]
        L = self.weight_levels
        q = np.clip(np.rint(ratios / self.weight_step), -L, L).astype(np.int64) + L
        rest_idx, rest_q = idx[:, 1:], q
        # sort the other atoms of each item by index (their order carries no information); pads (-1) last
        key = np.where(rest_idx >= 0, rest_idx, np.iinfo(np.int64).max)
        order = np.argsort(key, axis=1, kind="stable")
        rest_idx = np.take_along_axis(rest_idx, order, 1)
        rest_q = np.take_along_axis(rest_q, order, 1)
        mask = rest_idx >= 0
        return SparseCodes(
            counts=counts.astype(np.int64),
            first=idx[:, 0].astype(np.int64),
            sign=(c0 < 0).astype(np.int64),
            rest=rest_idx[mask].astype(np.int64),
            ratios=rest_q[mask].astype(np.int64),
        )

    # ------------------------------------------------------------------------------------ entropy models
    def histograms(self, codes: SparseCodes, n_atoms: int, sparsity: int) -> SymbolCounts:
        """Symbol counts of ``codes`` (items of at most ``sparsity`` atoms out of ``n_atoms``)."""
        return SymbolCounts(
            count=np.bincount(codes.counts - 1, minlength=sparsity),
            index=np.bincount(np.concatenate([codes.first, codes.rest]), minlength=n_atoms),
            ratio=np.bincount(codes.ratios, minlength=2 * self.weight_levels + 1),
            sign=np.bincount(codes.sign, minlength=2),
        )

    @staticmethod
    def fit_models(counts: SymbolCounts) -> EntropyModels:
        """The entropy models of the per-item symbols, fit on a collection's (summed) symbol counts."""
        return EntropyModels(
            count=CategoricalModel.from_counts(counts.count),
            index=CategoricalModel.from_counts(counts.index),
            ratio=CategoricalModel.from_counts(counts.ratio),
            sign=CategoricalModel.from_counts(counts.sign),
        )

    @staticmethod
    def ideal_bits(codes: SparseCodes, m: EntropyModels) -> float:
        """What ``codes`` cost under the models ``m`` (an estimate: the range coder adds a few bits per block)."""
        return (
            m.count.ideal_bits(codes.counts - 1)
            + m.index.ideal_bits(np.concatenate([codes.first, codes.rest]))
            + m.sign.ideal_bits(codes.sign)
            + m.ratio.ideal_bits(codes.ratios)
        )

    # ------------------------------------------------------------------------------------ blocks
    @staticmethod
    def encode_block(codes: SparseCodes, m: EntropyModels) -> bytes:
        """One block's range-coded symbols (counts, first atoms, signs, then the other atoms and ratios)."""
        enc = Encoder()
        enc.encode_categorical(codes.counts - 1, m.count)
        enc.encode_categorical(codes.first, m.index)
        enc.encode_categorical(codes.sign, m.sign)
        if len(codes.rest):
            enc.encode_categorical(codes.rest, m.index)
            enc.encode_categorical(codes.ratios, m.ratio)
        return enc.to_bytes()

    @staticmethod
    def decode_block(payload: bytes, n: int, m: EntropyModels) -> SparseCodes:
        """The codes of the ``n`` items of one block written by :meth:`encode_block`."""
        dec = Decoder(payload)
        counts = dec.decode_categorical(m.count, n) + 1
        first = dec.decode_categorical(m.index, n)
        sign = dec.decode_categorical(m.sign, n)
        n_rest = int(counts.sum() - n)
        rest = dec.decode_categorical(m.index, n_rest) if n_rest else np.zeros(0, np.int64)
        ratios = dec.decode_categorical(m.ratio, n_rest) if n_rest else np.zeros(0, np.int64)
        dec.finish()
        return SparseCodes(counts, first, sign, rest, ratios)

    def encode_blocks(
        self, codes: SparseCodes, models: EntropyModels, progress: Callable[[int], None] | None = None
    ) -> list[tuple[int, bytes]]:
        """``codes`` range-coded in blocks of ``block_size`` items: (items, bytes) per block."""
        n = len(codes.counts)
        blocks = []
        for start in range(0, n, self.block_size):
            stop = min(n, start + self.block_size)
            blocks.append((stop - start, self.encode_block(codes.slice(start, stop), models)))
            if progress is not None:
                progress(stop - start)
        return blocks

    def reconstruct(self, codes: SparseCodes, D: np.ndarray) -> np.ndarray:
        """Decoded unit-norm embeddings from integer codes and the decoder's atoms."""
        x = D[codes.first].copy()
        r = (codes.ratios.astype(np.float32) - np.float32(self.weight_levels)) * np.float32(self.weight_step)
        starts = np.concatenate([[0], np.cumsum(codes.counts - 1)[:-1]])
        for slot in range(int(codes.counts.max(initial=1)) - 1):  # fixed order: deterministic float sums
            has = np.flatnonzero(codes.counts - 1 > slot)
            j = starts[has] + slot
            x[has] += r[j, None] * D[codes.rest[j]]
        x *= np.where(codes.sign == 1, np.float32(-1), np.float32(1))[:, None]
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1).astype(np.float32)

    # ------------------------------------------------------------------------------------ archive
    def assemble(
        self,
        dictionary: QuantizedDictionary,
        models: EntropyModels,
        *,
        sparsity: int,
        fit: dict,
        space: str | None = None,
        pixels_per_item: int | None = None,
        encoder: ModelRef | None = None,
    ) -> tuple[Header, dict[str, bytes]]:
        """The archive's header and stored-once sections (dictionary, models); the item blocks come from
        :meth:`encode_blocks`. ``fit`` records how the dictionary was learned."""
        header = self.make_header(
            n_atoms=dictionary.n_atoms, dim=dictionary.dim, sparsity=sparsity, atom_step=dictionary.step,
            fit=fit, space=space, pixels_per_item=pixels_per_item, encoder=encoder,
        )
        return header, {"dictionary": dictionary.blob, "models": models.to_bytes()}

    # ------------------------------------------------------------------------------------ compress
    def compress(
        self,
        data: np.ndarray,
        names: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Encoded:
        """Learn the dictionary, code every item, and return the archive's parts (the in-memory engine)."""
        X = normalised(validate_embeddings(data))
        plan = self.plan(len(X))
        learner = self._learn(X, plan)
        dictionary = self.quantize(learner.dictionary_)
        codes, models, k = self._code_within_budget(X, dictionary, plan)
        blocks = self.encode_blocks(codes, models, progress)
        header, blobs = self.assemble(
            dictionary, models, sparsity=k,
            fit={"method": "online", "epochs": int(learner.n_iter_), "seed": self.random_state},
        )
        return Encoded(header, blobs, blocks, names)

    def _learn(self, X: np.ndarray, plan: CollectionPlan) -> Any:
        """The fitted dictionary learner (looked up in ``semzip.sparse`` at call time: benchmarks swap it)."""
        require("torch", "torch", "dictionary learning")
        from semzip.sparse import DictionaryLearner

        return DictionaryLearner(**self.learner_params(plan)).fit(X)

    def _code_within_budget(
        self, X: np.ndarray, dictionary: QuantizedDictionary, plan: CollectionPlan
    ) -> tuple[SparseCodes, EntropyModels, int]:
        """Codes, models and sparsity: ``plan.sparsity``, or with ``bits_per_item`` the largest sparsity whose
        estimated total rate (dictionary included) fits the budget."""
        n, D = len(X), dictionary.atoms

        def code_and_fit(k: int) -> tuple[SparseCodes, EntropyModels]:
            codes = self.code(X, D, k)
            return codes, self.fit_models(self.histograms(codes, plan.n_atoms, k))

        k = plan.sparsity
        codes, models = code_and_fit(k)
        if self.bits_per_item is None:
            return codes, models, k
        fixed_bits = 8 * (len(dictionary.blob) + 600)  # + models and header, estimated
        while k > 1 and (self.ideal_bits(codes, models) + fixed_bits) / n > self.bits_per_item:
            k -= 1
            codes, models = code_and_fit(k)
        est = (self.ideal_bits(codes, models) + fixed_bits) / n
        if est > self.bits_per_item:
            raise InvalidInputError(
                f"--bits-per-item {self.bits_per_item} cannot be met: even one atom per item costs about "
                f"{est:.1f} bits per item here (dictionary included); use fewer atoms or more items"
            )
        return codes, models, k

    def dictionary_blob(self, qD: np.ndarray) -> bytes:
        """The dictionary section: u32 length of the value table, the table, then the coded atom values."""
        dict_model = CategoricalModel.from_counts(np.bincount(qD.ravel(), minlength=2**self.atom_bits - 1))
        table = dict_model.to_bytes()
        return struct.pack("<I", len(table)) + table + encode_symbols(qD.ravel(), dict_model)

    def make_header(
        self,
        *,
        n_atoms: int,
        dim: int,
        sparsity: int,
        atom_step: float,
        fit: dict,
        space: str | None = None,
        pixels_per_item: int | None = None,
        encoder: ModelRef | None = None,
    ) -> Header:
        """The archive header (every writer of collection archives goes through here)."""
        encoder = encoder or self.encoder
        return Header(
            codec=self.name,
            params={
                "n_atoms": n_atoms,
                "dim": dim,
                "sparsity": sparsity,
                "min_cosine": self.min_cosine,
                "atom_bits": self.atom_bits,
                "atom_step": atom_step,
                "weight_step": self.weight_step,
                "weight_clip": self.weight_clip,
                "block_size": self.block_size,
                "space": space or self.space,
                "pixels_per_item": pixels_per_item or self.pixels_per_item,
                "dictionary_fit": fit,
            },
            models=[encoder] if encoder else [],
            writer=f"semzip {__version__}",
        )

    # ------------------------------------------------------------------------------------ decompress
    @classmethod
    def from_header(cls, header: Header) -> CollectionCodec:
        check_header(header)
        p = header.params
        try:
            return cls(
                n_atoms=int(p["n_atoms"]),
                sparsity=int(p["sparsity"]),
                min_cosine=p["min_cosine"],
                atom_bits=int(p["atom_bits"]),
                weight_step=float(p["weight_step"]),
                weight_clip=float(p["weight_clip"]),
                block_size=int(p["block_size"]),
                encoder=header.model("encoder"),
                space=str(p["space"]),
                pixels_per_item=int(p["pixels_per_item"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CorruptedSectionError(f"collection parameters are missing or malformed ({exc!r})") from None

    def load_state(self, container: Container) -> tuple[np.ndarray, EntropyModels]:
        """The decoder's atoms and the per-item entropy models stored in an archive, checked against the
        header (table sizes from n_atoms, sparsity, atom_bits and the weight levels)."""
        check_container(container)
        p = container.header.params
        blob = container.read("dictionary")
        if len(blob) < 4:
            raise CorruptedSectionError(f"{container.label}: dictionary section is truncated")
        (m_len,) = struct.unpack_from("<I", blob, 0)
        if 4 + m_len > len(blob):
            raise CorruptedSectionError(f"{container.label}: dictionary section is truncated")
        dict_model = CategoricalModel.from_bytes(blob[4 : 4 + m_len])
        if dict_model.num_symbols != 2**self.atom_bits - 1:
            raise CorruptedSectionError(f"{container.label}: the dictionary's value table does not match atom_bits")
        try:
            n_atoms, d, atom_step = int(p["n_atoms"]), int(p["dim"]), float(p["atom_step"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CorruptedSectionError(f"{container.label}: collection parameters are malformed ({exc!r})") from None
        if not (n_atoms >= 1 and d >= 1 and math.isfinite(atom_step)):
            raise CorruptedSectionError(f"{container.label}: collection parameters are out of range")
        container.check_values(n_atoms * d, f"dictionary numbers ({n_atoms} atoms x {d} dimensions)")
        qD = decode_symbols(blob[4 + m_len :], dict_model, n_atoms * d).reshape(n_atoms, d)
        _check_atoms(qD, atom_step, self.atom_bits, container.label)
        D = dequantize_dictionary(qD, atom_step, self.atom_bits)
        models = EntropyModels.from_bytes(container.read("models"))
        if (models.index.num_symbols != n_atoms or models.count.num_symbols != self.sparsity
                or models.ratio.num_symbols != 2 * self.weight_levels + 1 or models.sign.num_symbols != 2):
            raise CorruptedSectionError(
                f"{container.label}: entropy models do not match the parameters (n_atoms, sparsity, weight_step "
                "and weight_clip)")
        return D, models

    def decode_codes(self, container: Container, items: Sequence[int] | None = None) -> SparseCodes:
        """Integer sparse codes of all items, or of ``items`` (reading only their blocks)."""
        _, models = self.load_state(container)
        return self.decode_blocks(container, models, items)

    def decode_blocks(
        self, container: Container, models: EntropyModels, items: Sequence[int] | None = None
    ) -> SparseCodes:
        """Integer sparse codes of all items, or of ``items``, under ``models`` (from :meth:`load_state`);
        each block is decoded once however many of its items are asked for."""
        if items is None:
            return SparseCodes.concatenate(
                [self.decode_block(payload, b.n_items, models) for b, payload in container.iter_blocks()])
        cache: dict[int, SparseCodes] = {}
        parts = []
        for item in items:
            blk, pos = container.locate(item)
            if blk not in cache:
                cache[blk] = self.decode_block(container.block(blk), container.blocks[blk].n_items, models)
            parts.append(cache[blk].slice(pos, pos + 1))
        return SparseCodes.concatenate(parts)

    def decode_integers(self, container: Container) -> np.ndarray:
        """Every integer symbol of the items' sparse codes (counts, first atoms, signs, other atoms, weight
        ratios), before any float step: what must decode the same on every machine."""
        codes = self.decode_codes(container)
        return np.concatenate([codes.counts, codes.first, codes.sign, codes.rest, codes.ratios])

    def decompress(self, container: Container, items: Sequence[int] | None = None) -> np.ndarray:
        """Decoded unit-norm float32 embeddings of all items (or of ``items`` only)."""
        D, models = self.load_state(container)
        n_out = container.header.n_items if items is None else len(items)
        container.check_values(n_out * D.shape[1], f"numbers ({n_out} items x {D.shape[1]} dimensions)")
        codes = self.decode_blocks(container, models, items)
        if len(codes.counts) and (codes.first.max() >= D.shape[0] or (len(codes.rest) and codes.rest.max() >= D.shape[0])):
            raise CorruptedSectionError(f"{container.label}: an atom index lies outside the dictionary")
        return self.reconstruct(codes, D)

    # ------------------------------------------------------------------------------------ add
    def encode_more(self, container: Container, data: np.ndarray, progress=None) -> list[tuple[int, bytes]]:
        """Code new items on an archive's existing dictionary and models (old items are not touched)."""
        X = normalised(validate_embeddings(data))
        D, models = self.load_state(container)
        if X.shape[1] != D.shape[1]:
            raise InvalidInputError(f"new embeddings have {X.shape[1]} dimensions, the archive's {D.shape[1]}")
        return self.encode_blocks(self.code(X, D, self.sparsity), models, progress)

def normalised(X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` scaled to unit norm (float32); an all-zero row is refused."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms == 0).any():
        bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise InvalidInputError(f"embedding {bad} is all zeros; it has no direction to code")
    return (X / norms).astype(np.float32)
