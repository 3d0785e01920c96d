"""Compressed-domain search equals exact search over the decoded embeddings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from semzip.api import compress_embeddings, decompress
from semzip.query.search import SearchIndex
from semzip.sparse.synthetic import make_sparse_embeddings


def test_scores_match_decoded_embeddings(tmp_path):
    x = make_sparse_embeddings(n=300, d=48, n_concepts=30, k=3, seed=5)
    arc = tmp_path / "x.smz"
    compress_embeddings(x, arc, codec="collection", n_atoms=32, sparsity=4, max_epochs=3)
    index = SearchIndex.from_archive(arc)
    y = decompress(arc)
    rng = np.random.default_rng(0)
    for q in (x[3], rng.standard_normal(48).astype(np.float32)):
        exact = y @ (q / np.linalg.norm(q))
        np.testing.assert_allclose(index.scores(q), exact, atol=1e-4)
        top = index.top(q, 5)
        assert [n for n, _ in top] == [f"item_{i:05d}" for i in np.argsort(-exact, kind="stable")[:5]]
    assert index.top(x[3], 1)[0][0] == "item_00003"
