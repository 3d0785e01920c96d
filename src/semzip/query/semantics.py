"""Semantic arithmetic in an embedding space (SMIC's figures 4 and 5) and the "dictionary is semantic" probe.

Concepts are embeddings of the archive's own space (a text prompt through the encoder's text tower, or an
image through its image tower); adding ``w * concept`` to an item's embedding and renormalising moves it
towards the concept, a negative weight moves it away.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semzip.errors import InvalidInputError


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(n == 0):
        raise InvalidInputError("cannot normalise a zero embedding")
    return x / n


def blend(embedding: np.ndarray, concepts: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """``normalise(e + sum_i w_i * c_i)`` for (concept embedding, weight) pairs; negative weights remove."""
    out = _unit(embedding).copy()
    for concept, weight in concepts:
        c = _unit(concept)
        if c.shape != out.shape[-1:]:
            raise InvalidInputError(f"concept has dimension {c.shape}, the embedding {out.shape[-1]}")
        out = out + np.float32(weight) * c
    return _unit(out)


def nearest_concepts(
    atoms: np.ndarray, vocab_embeddings: np.ndarray, vocab: Sequence[str], top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """For every atom, the ``top_k`` vocabulary entries of highest cosine similarity, with the cosines."""
    if len(vocab) != len(vocab_embeddings):
        raise InvalidInputError(f"{len(vocab)} words but {len(vocab_embeddings)} embeddings")
    if atoms.shape[1] != vocab_embeddings.shape[1]:
        raise InvalidInputError(f"atoms have dimension {atoms.shape[1]}, the vocabulary {vocab_embeddings.shape[1]}")
    sims = _unit(atoms) @ _unit(vocab_embeddings).T
    k = min(top_k, len(vocab))
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return [[(vocab[j], float(sims[i, j])) for j in row] for i, row in enumerate(top)]
