"""Exact k-nearest-neighbour classification.

:class:`KNearestNeighbor` (and the lecture's :class:`NearestNeighbor`, k = 1 with
L1) on top of an exact, memory-bounded search (:func:`~imgcls.neighbors.search.knn_search`):
a numba SAD kernel for L1, faiss's matrix-multiply path with an exactness
certificate for L2 and cosine.  :mod:`~imgcls.neighbors.vote` turns neighbours
into votes; :mod:`~imgcls.neighbors.reference` is the plain lecture code the
fast paths are tested against.
"""

from .knn import KNearestNeighbor, NearestNeighbor
from .search import knn_search
from .vote import vote_rank, vote_scores

__all__ = ["KNearestNeighbor", "NearestNeighbor", "knn_search", "vote_scores", "vote_rank"]
