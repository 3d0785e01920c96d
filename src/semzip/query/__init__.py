"""Query features: ask a collection archive questions without decoding its images.

- :mod:`semzip.query.search`: rank a collection archive's items against a query embedding from the sparse
  codes and the dictionary alone (:class:`SearchIndex`);
- :mod:`semzip.query.semantics`: concept arithmetic in an embedding space (:func:`blend`) and the nearest
  vocabulary words of each dictionary atom (:func:`nearest_concepts`).

Importing this package needs numpy only: encoders (and torch) are loaded by the callers that need them.
"""

from semzip.query.search import SearchIndex
from semzip.query.semantics import blend, nearest_concepts

__all__ = ["SearchIndex", "blend", "nearest_concepts"]
