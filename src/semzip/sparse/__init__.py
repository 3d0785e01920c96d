"""Sparse coding and dictionary learning in torch (CPU or GPU); scikit-learn is the reference.

``batch_omp`` codes signals over a dictionary with Batch-OMP; ``DictionaryLearner`` learns the dictionary
(online mini-batch after Mairal et al. 2009, or approximate K-SVD). torch is imported lazily.
"""

from semzip.sparse.dictionary import DictionaryLearner
from semzip.sparse.omp import batch_omp, cosine_similarity, fit_coefs, reconstruct
from semzip.sparse.synthetic import make_sparse_embeddings

__all__ = [
    "DictionaryLearner",
    "batch_omp",
    "cosine_similarity",
    "fit_coefs",
    "make_sparse_embeddings",
    "reconstruct",
]
