"""Scalar-quantised embedding codec ("sq"): each embedding dimension uniformly quantised, entropy-coded.

It is the simplest honest way to store a collection of embeddings and the baseline the dictionary codec
(SMIC) must beat: per item it costs about d * H(q) bits where H is the entropy of the quantised values under
one categorical model learned from the collection (its integer frequency table is stored once per archive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from semzip._version import __version__
from semzip.codecs.base import Encoded
from semzip.data.embeddings import validate_embeddings
from semzip.entropy import CategoricalModel, decode_symbols, encode_symbols
from semzip.errors import CorruptedSectionError, InvalidInputError
from semzip.format import Container, Header, check_container, check_header


class ScalarQuantCodec:
    """Uniform scalar quantisation of every dimension at ``bits`` bits, entropy-coded in blocks of items."""

    name = "sq"
    decodes_to = "embeddings"

    def __init__(self, bits: int = 8, block_size: int = 64, precision: int = 16):
        if not 2 <= bits <= 12:
            raise InvalidInputError(f"bits must be between 2 and 12, got {bits}")
        if block_size < 1:
            raise InvalidInputError(f"block_size must be positive, got {block_size}")
        self.bits = bits
        self.block_size = block_size
        self.precision = precision

    @property
    def levels(self) -> int:
        """Largest quantisation index; symbols lie in [0, 2 * levels]."""
        return 2 ** (self.bits - 1) - 1

    def compress(self, data: np.ndarray, names: Sequence[str] | None = None, progress=None) -> Encoded:
        """Quantise and entropy-code an (n, d) embedding matrix."""
        x = validate_embeddings(data)
        n, d = x.shape
        clip = float(np.abs(x).max()) or 1.0
        step = clip / self.levels
        q = np.clip(np.rint(x / np.float32(step)), -self.levels, self.levels).astype(np.int64) + self.levels
        model = CategoricalModel.from_counts(np.bincount(q.ravel(), minlength=2 * self.levels + 1), self.precision)
        norms = np.linalg.norm(x, axis=1)
        blocks = []
        for start in range(0, n, self.block_size):
            chunk = q[start : start + self.block_size]
            blocks.append((len(chunk), encode_symbols(chunk.ravel(), model)))
            if progress is not None:
                progress(len(chunk))
        header = Header(
            codec=self.name,
            params={
                "bits": self.bits,
                "dim": d,
                "step": step,
                "normalize": bool(np.allclose(norms, 1.0, atol=1e-3)),
                "block_size": self.block_size,
            },
            writer=f"semzip {__version__}",
        )
        return Encoded(header, {"model": model.to_bytes()}, blocks, names)

    @classmethod
    def from_header(cls, header: Header) -> ScalarQuantCodec:
        check_header(header)
        p = header.params
        try:
            return cls(bits=int(p["bits"]), block_size=int(p["block_size"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CorruptedSectionError(f"sq parameters are missing or malformed ({exc!r})") from None

    def decompress(self, container: Container, items: Sequence[int] | None = None) -> np.ndarray:
        """Decode all items (or only ``items``, reading only their blocks) to float32 embeddings."""
        check_container(container)
        p = container.header.params
        try:
            d, step, normalize = int(p["dim"]), float(p["step"]), bool(p["normalize"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise CorruptedSectionError(f"{container.label}: sq parameters are missing or malformed") from None
        if not (d >= 1 and math.isfinite(step)):
            raise CorruptedSectionError(f"{container.label}: sq parameters are out of range (dim {d}, step {step})")
        n_out = container.header.n_items if items is None else len(items)
        container.check_values(n_out * d, f"numbers ({n_out} items x {d} dimensions)")
        model = CategoricalModel.from_bytes(container.read("model"))
        if model.num_symbols != 2 * self.levels + 1:
            raise CorruptedSectionError(
                f"{container.label}: the value table has {model.num_symbols} symbols, {self.bits}-bit values "
                f"need {2 * self.levels + 1}")
        levels = np.float32(self.levels)
        step32 = np.float32(step)

        def dequantize(q: np.ndarray, out: np.ndarray) -> None:
            # block by block into the output: peak memory is the float32 result plus one block's symbols
            np.subtract(q, levels, out=out, casting="unsafe")
            out *= step32
            if normalize:
                norms = np.linalg.norm(out, axis=1, keepdims=True)
                out /= np.where(norms > 0, norms, 1).astype(np.float32)

        x = np.empty((n_out, d), dtype=np.float32)
        if items is None:
            row = 0
            for b, payload in container.iter_blocks():
                q = decode_symbols(payload, model, b.n_items * d).reshape(b.n_items, d)
                dequantize(q, x[row : row + b.n_items])
                row += b.n_items
        else:
            decoded: dict[int, np.ndarray] = {}
            for j, item in enumerate(items):
                blk, pos = container.locate(item)
                if blk not in decoded:
                    info = container.blocks[blk]
                    decoded = {blk: decode_symbols(container.block(blk), model, info.n_items * d).reshape(-1, d)}
                dequantize(decoded[blk][pos : pos + 1], x[j : j + 1])
        return x

    def decode_integers(self, container: Container) -> np.ndarray:
        """The quantised values of every item, as the entropy decoder yields them (before any float step):
        what must decode the same on every machine (:func:`semzip.archive.digest.embeddings_digest`)."""
        model = CategoricalModel.from_bytes(container.read("model"))
        d = int(container.header.params["dim"])
        return np.concatenate([decode_symbols(blob, model, b.n_items * d) for b, blob in container.iter_blocks()])
