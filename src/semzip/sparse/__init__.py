"""Sparse coding and dictionary learning in torch (CPU or GPU); scikit-learn is the reference.

``batch_omp`` codes signals over a dictionary with Batch-OMP (``omp``); ``DictionaryLearner`` learns the
dictionary (``dictionary``: the fit loops and the public API) online after Mairal et al. 2009 (``online``: the
sufficient statistics, the atom update and the dead-atom pool) or by approximate K-SVD (``ksvd``), with
scikit-learn's parameter API (``params``). torch is imported lazily.
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
