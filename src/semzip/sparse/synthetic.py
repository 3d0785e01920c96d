"""Synthetic CLIP-like embeddings with a known sparse semantic structure, for tests and benchmarks.

Model: there are ``n_concepts`` hidden unit-norm "concept" directions in R^d (random, hence nearly
orthogonal for large d). Each item mixes ``k`` distinct concepts, drawn with Zipf-like popularity (a few
concepts are common, most are rare, as in real photo collections); mixing weights are positive and
decreasing (``|N(1, 0.3)| / rank``), so one concept dominates. A shared mean direction of weight
``mean_weight`` mimics the common offset of CLIP image embeddings (random CLIP image pairs have cosine
~0.5). Gaussian noise with total norm ~``noise`` (relative to the concept mixture) is added, and every item
is normalised to unit norm, as CLIP embeddings are.
"""

from __future__ import annotations

import numpy as np

from semzip.errors import InvalidInputError

__all__ = ["make_sparse_embeddings"]


def make_sparse_embeddings(
    n: int,
    d: int = 1024,
    n_concepts: int = 512,
    k: int = 4,
    noise: float = 0.1,
    seed: int | None = 0,
    *,
    mean_weight: float = 0.5,
    zipf: float = 0.7,
    return_truth: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``n`` unit-norm float32 embeddings (n, d) that are noisy ``k``-sparse concept mixtures.

    With ``return_truth`` also returns the concept directions (n_concepts, d) and the dense mixing codes
    (n, n_concepts) used before the mean, noise and normalisation were applied.
    """
    if n < 0 or d < 1 or n_concepts < 1 or not (1 <= k <= n_concepts):
        raise InvalidInputError(
            f"need n >= 0, d >= 1, 1 <= k <= n_concepts; got {n=}, {d=}, {n_concepts=}, {k=}"
        )
    if noise < 0 or mean_weight < 0 or zipf < 0:
        raise InvalidInputError("noise, mean_weight and zipf must be >= 0")
    rng = np.random.default_rng(seed)
    concepts = rng.standard_normal((n_concepts, d))
    concepts /= np.linalg.norm(concepts, axis=1, keepdims=True)
    mean_dir = rng.standard_normal(d)
    mean_dir /= np.linalg.norm(mean_dir)

    popularity = 1.0 / np.arange(1, n_concepts + 1) ** zipf
    popularity = popularity[rng.permutation(n_concepts)]
    log_pop = np.log(popularity)[None, :]
    support = np.zeros((n, k), dtype=np.int64)
    weights = np.zeros((n, k))
    X = np.zeros((n, d), dtype=np.float32)
    for s in range(0, n, 4096):  # chunked to bound memory at large n
        m = min(4096, n - s)
        # k distinct concepts per item, drawn by popularity (Gumbel top-k = sampling without replacement).
        logits = log_pop + rng.gumbel(size=(m, n_concepts))
        sup = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        w = np.abs(rng.normal(1.0, 0.3, size=(m, k))) / np.arange(1, k + 1)[None, :]
        x = np.einsum("nk,nkd->nd", w, concepts[sup])
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        x += mean_weight * mean_dir[None, :]
        x += rng.standard_normal((m, d)) * (noise / np.sqrt(d))
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        X[s : s + m], support[s : s + m], weights[s : s + m] = x, sup, w
    if return_truth:
        codes = np.zeros((n, n_concepts), dtype=np.float32)
        np.put_along_axis(codes, support, weights.astype(np.float32), axis=1)
        return X, concepts.astype(np.float32), codes
    return X
