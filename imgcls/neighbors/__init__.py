"""Exact k-nearest-neighbour classification.

:class:`KNearestNeighbor` (and the lecture's :class:`NearestNeighbor`, k = 1 with
L1) on top of an exact, memory-bounded search
(:func:`~imgcls.neighbors.search.knn_search`): a numba SAD kernel for L1; for
L2 and cosine, float32 sgemm candidates (numpy's BLAS and a numba merge kernel)
with an exactness certificate.  :mod:`~imgcls.neighbors.vote` turns neighbours
into votes; :mod:`~imgcls.neighbors.reference` is the plain lecture code the
fast paths are tested against.
"""

from .knn import KNearestNeighbor, NearestNeighbor
from .search import knn_search
from .vote import vote_rank, vote_scores

__all__ = ["KNearestNeighbor", "NearestNeighbor", "knn_search", "vote_scores", "vote_rank"]
