"""Compressed-domain search: rank a collection archive's items by cosine similarity to a query embedding
using only the sparse codes and the dictionary (no image decoding, no per-item embedding reconstruction).

For an item coded as ``x ~ s * sum_j w_j a_j`` (w_0 = 1, atoms a_j unit-norm) the cosine to a unit query q is

    s * sum_j w_j (q . a_j) / sqrt(w^T G_S w)        with G = D D^T restricted to the item's atoms S.

``q . a_j`` is one (n_atoms x d) product per query; the denominators do not depend on the query and are
computed once per archive (``SearchIndex``), so a query costs O(n_atoms * d + n * k).
"""

from __future__ import annotations

import os

import numpy as np

from semzip.errors import InvalidInputError
from semzip.format import Container


class SearchIndex:
    """Per-item atom indices, weights and norms of a collection archive, ready for repeated queries."""

    def __init__(self, atoms: np.ndarray, indices: np.ndarray, weights: np.ndarray, names: list[str]):
        self.atoms = atoms
        self.indices = indices  # (n, k) atom indices, padded with 0 where weight is 0
        self.weights = weights  # (n, k) signed weights (sign folded in), 0 for padding
        self.names = names
        gram = atoms @ atoms.T
        g = gram[indices[:, :, None], indices[:, None, :]]  # (n, k, k)
        self.norms = np.sqrt(np.maximum(np.einsum("nk,nkl,nl->n", weights, g, weights), 1e-30)).astype(np.float32)

    @classmethod
    def from_archive(cls, archive: str | os.PathLike) -> SearchIndex:
        """The index of the collection archive at ``archive`` (opened and checked here)."""
        from semzip.format import open_archive

        with open_archive(archive) as c:
            return cls.from_container(c, str(archive))

    @classmethod
    def from_container(cls, c: Container, label: str | None = None) -> SearchIndex:
        """The index of an opened collection archive: its dictionary and integer sparse codes, no embedding
        reconstructed (``label`` names the archive in errors)."""
        from semzip.codecs.collection import CollectionCodec

        if c.header.codec != "collection":
            raise InvalidInputError(f"search needs a collection archive; {label or c.label} is {c.header.codec!r}")
        codec = CollectionCodec.from_header(c.header)
        atoms, models = codec.load_state(c)
        return cls.from_codes(atoms, codec.decode_blocks(c, models), codec.weight_levels, codec.weight_step,
                              list(c.names))

    @classmethod
    def from_codes(cls, atoms: np.ndarray, codes, weight_levels: int, weight_step: float,
                   names: list[str]) -> SearchIndex:
        """The index of sparse ``codes`` (a collection codec's :class:`SparseCodes`) over ``atoms``: each
        item's atoms in slots, the first with weight 1, the others at their dequantised weight ratios."""
        n, k = len(codes.counts), int(codes.counts.max()) if len(codes.counts) else 1
        idx = np.zeros((n, k), np.int64)
        w = np.zeros((n, k), np.float32)
        idx[:, 0], w[:, 0] = codes.first, 1.0
        slot = np.concatenate([np.arange(1, c_) for c_ in codes.counts]) if len(codes.rest) else np.zeros(0, int)
        owner = np.repeat(np.arange(n), codes.counts - 1)
        idx[owner, slot] = codes.rest
        w[owner, slot] = (codes.ratios.astype(np.float32) - weight_levels) * np.float32(weight_step)
        w *= np.where(codes.sign == 1, -1, 1).astype(np.float32)[:, None]
        return cls(atoms, idx, w, names)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of every item to ``query`` (d,)."""
        q = np.asarray(query, np.float32).ravel()
        if q.shape[0] != self.atoms.shape[1]:
            raise InvalidInputError(f"query has {q.shape[0]} dimensions, the archive's space {self.atoms.shape[1]}")
        q = q / max(float(np.linalg.norm(q)), 1e-30)
        qa = self.atoms @ q
        return (self.weights * qa[self.indices]).sum(1) / self.norms

    def top(self, query: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` best items as (name, cosine), best first."""
        s = self.scores(query)
        k = min(k, len(s))
        part = np.argpartition(-s, k - 1)[:k]
        best = part[np.argsort(-s[part], kind="stable")]
        return [(self.names[i], float(s[i])) for i in best]
