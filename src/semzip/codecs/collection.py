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
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass
class EntropyModels:
    """The categorical models of the per-item symbols, learned from the collection, stored once."""

    count: CategoricalModel
    index: CategoricalModel
    ratio: CategoricalModel
    sign: CategoricalModel

    def to_bytes(self) -> bytes:
        parts = [m.to_bytes() for m in (self.count, self.index, self.ratio, self.sign)]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> EntropyModels:
        models, pos = [], 0
        for _ in range(4):
            if pos + 4 > len(data):
                raise CorruptedSectionError("collection entropy models are truncated")
            (n,) = struct.unpack_from("<I", data, pos)
            if pos + 4 + n > len(data):
                raise CorruptedSectionError("collection entropy models are truncated")
            models.append(CategoricalModel.from_bytes(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        if pos != len(data):
            raise CorruptedSectionError("collection entropy models have trailing bytes")
        return cls(*models)


class CollectionCodec:
    """Dictionary + sparse-code compression of an embedding collection (sklearn-like hyperparameters)."""

    name = "collection"

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
        return int(math.ceil(self.weight_clip / self.weight_step))

    # ------------------------------------------------------------------------------------ sparse codes
    def _code(self, X: np.ndarray, D: np.ndarray, k: int) -> SparseCodes:
        """OMP over the decoder's atoms, then the integer symbols of each item."""
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

    def _fit_models(self, codes: SparseCodes, n_atoms: int, k_max: int) -> EntropyModels:
        idx = np.concatenate([codes.first, codes.rest])
        return EntropyModels(
            count=CategoricalModel.from_counts(np.bincount(codes.counts - 1, minlength=k_max)),
            index=CategoricalModel.from_counts(np.bincount(idx, minlength=n_atoms)),
            ratio=CategoricalModel.from_counts(np.bincount(codes.ratios, minlength=2 * self.weight_levels + 1)),
            sign=CategoricalModel.from_counts(np.bincount(codes.sign, minlength=2)),
        )

    @staticmethod
    def _ideal_bits(codes: SparseCodes, m: EntropyModels) -> float:
        return (
            m.count.ideal_bits(codes.counts - 1)
            + m.index.ideal_bits(np.concatenate([codes.first, codes.rest]))
            + m.sign.ideal_bits(codes.sign)
            + m.ratio.ideal_bits(codes.ratios)
        )

    @staticmethod
    def _encode_block(codes: SparseCodes, m: EntropyModels) -> bytes:
        enc = Encoder()
        enc.encode_categorical(codes.counts - 1, m.count)
        enc.encode_categorical(codes.first, m.index)
        enc.encode_categorical(codes.sign, m.sign)
        if len(codes.rest):
            enc.encode_categorical(codes.rest, m.index)
            enc.encode_categorical(codes.ratios, m.ratio)
        return enc.to_bytes()

    @staticmethod
    def _decode_block(payload: bytes, n: int, m: EntropyModels) -> SparseCodes:
        dec = Decoder(payload)
        counts = dec.decode_categorical(m.count, n) + 1
        first = dec.decode_categorical(m.index, n)
        sign = dec.decode_categorical(m.sign, n)
        n_rest = int(counts.sum() - n)
        rest = dec.decode_categorical(m.index, n_rest) if n_rest else np.zeros(0, np.int64)
        ratios = dec.decode_categorical(m.ratio, n_rest) if n_rest else np.zeros(0, np.int64)
        dec.finish()
        return SparseCodes(counts, first, sign, rest, ratios)

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

    # ------------------------------------------------------------------------------------ compress
    def compress(
        self,
        data: np.ndarray,
        names: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Encoded:
        """Learn the dictionary, code every item, and return the archive's parts."""
        require("torch", "torch", "dictionary learning")
        from semzip.sparse import DictionaryLearner

        X = normalised(validate_embeddings(data))
        n, d = X.shape
        n_atoms = self.n_atoms or default_n_atoms(n)
        if n_atoms > n:
            raise InvalidInputError(f"--n-atoms {n_atoms} exceeds the {n} items; use fewer atoms")
        k_cap = min(self.sparsity, n_atoms)
        learner = DictionaryLearner(
            n_atoms=n_atoms,
            n_nonzero=k_cap,
            min_cosine=self.min_cosine,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            random_state=self.random_state,
            device=self.device,
            verbose=self.verbose,
        ).fit(X)
        qD, step = quantize_dictionary(learner.dictionary_, self.atom_bits)
        D = dequantize_dictionary(qD, step, self.atom_bits)
        dict_blob = self.dictionary_blob(qD)
        fixed_bits = 8 * (len(dict_blob) + 600)  # + models and header, estimated

        k = k_cap
        codes = self._code(X, D, k)
        models = self._fit_models(codes, n_atoms, k)
        if self.bits_per_item is not None:  # largest sparsity whose estimated total rate fits the budget
            while k > 1 and (self._ideal_bits(codes, models) + fixed_bits) / n > self.bits_per_item:
                k -= 1
                codes = self._code(X, D, k)
                models = self._fit_models(codes, n_atoms, k)
            est = (self._ideal_bits(codes, models) + fixed_bits) / n
            if est > self.bits_per_item:
                raise InvalidInputError(
                    f"--bits-per-item {self.bits_per_item} cannot be met: even one atom per item costs about "
                    f"{est:.1f} bits per item here (dictionary included); use fewer atoms or more items"
                )
        blocks = []
        for start in range(0, n, self.block_size):
            stop = min(n, start + self.block_size)
            blocks.append((stop - start, self._encode_block(codes.slice(start, stop), models)))
            if progress is not None:
                progress(stop - start)
        header = self.make_header(
            n_atoms=n_atoms, dim=d, sparsity=k, atom_step=step,
            fit={"method": "online", "epochs": int(learner.n_iter_), "seed": self.random_state},
        )
        return Encoded(header, {"dictionary": dict_blob, "models": models.to_bytes()}, blocks, names)

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
        return self._decode_items(container, models, items)

    def _decode_items(self, container: Container, models: EntropyModels, items: Sequence[int] | None):
        if items is None:
            parts = [self._decode_block(payload, b.n_items, models) for b, payload in container.iter_blocks()]
        else:
            cache: dict[int, SparseCodes] = {}
            parts = []
            for item in items:
                blk, pos = container.locate(item)
                if blk not in cache:
                    cache[blk] = self._decode_block(container.block(blk), container.blocks[blk].n_items, models)
                parts.append(cache[blk].slice(pos, pos + 1))
        if not parts:
            z = np.zeros(0, np.int64)
            return SparseCodes(z, z, z, z, z)
        return SparseCodes(*(np.concatenate([getattr(p, f) for p in parts]) for f in SparseCodes.__dataclass_fields__))

    def decompress(self, container: Container, items: Sequence[int] | None = None) -> np.ndarray:
        """Decoded unit-norm float32 embeddings of all items (or of ``items`` only)."""
        D, models = self.load_state(container)
        n_out = container.header.n_items if items is None else len(items)
        container.check_values(n_out * D.shape[1], f"numbers ({n_out} items x {D.shape[1]} dimensions)")
        codes = self._decode_items(container, models, items)
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
        codes = self._code(X, D, self.sparsity)
        blocks = []
        for start in range(0, len(X), self.block_size):
            stop = min(len(X), start + self.block_size)
            blocks.append((stop - start, self._encode_block(codes.slice(start, stop), models)))
            if progress is not None:
                progress(stop - start)
        return blocks


def normalised(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms == 0).any():
        bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise InvalidInputError(f"embedding {bad} is all zeros; it has no direction to code")
    return (X / norms).astype(np.float32)
