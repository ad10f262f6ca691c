"""Retrieval metrics: how well an approximate neighbour search matches the exact one.

``recall_at_k`` is the usual measure of an approximate nearest-neighbour index
(faiss, the ANN benchmarks): of the ``k`` true nearest neighbours of a query, the
fraction the approximate search also returned.  Order inside a row does not matter.
"""

from __future__ import annotations

import numpy as np

__all__ = ["recall_at_k"]


def _indices_2d(ind, name: str) -> np.ndarray:
    ind = np.asarray(ind)
    if ind.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_queries, k), got shape {ind.shape}")
    if ind.shape[0] == 0 or ind.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {ind.shape}); recall needs at least one "
                         "query and one neighbour")
    if not np.issubdtype(ind.dtype, np.integer):
        raise ValueError(f"{name} must hold integer training indices, got dtype {ind.dtype}")
    return ind.astype(np.int64, copy=False)


def recall_at_k(ind_approx, ind_exact, k: int | None = None) -> float:
    """Mean fraction of the exact ``k`` nearest neighbours that the approximate search found.

    Parameters
    ----------
    ind_approx : array-like of int, shape (n_queries, k_approx)
        Training indices returned by the approximate search, any order within a row.
        Negative entries (faiss's "no neighbour found" padding) never match.
    ind_exact : array-like of int, shape (n_queries, k_exact)
        Training indices of the exact nearest neighbours, nearest first (e.g. the
        ``ind`` of ``KNearestNeighbor(algorithm="exact").kneighbors``); no row may
        repeat an index.
    k : int, optional
        How many neighbours count, ``1 <= k <= min(k_approx, k_exact)``: the first
        ``k`` columns of both arrays are compared.  Default ``min(k_approx, k_exact)``.

    Returns
    -------
    recall : float
        In [0, 1]: the mean over queries of ``|approx[:k] & exact[:k]| / k``.
        1.0 means the approximate search returned every true neighbour.
    """
    approx = _indices_2d(ind_approx, "ind_approx")
    exact = _indices_2d(ind_exact, "ind_exact")
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"ind_approx has {approx.shape[0]} queries but ind_exact has "
                         f"{exact.shape[0]}")
    k_max = min(approx.shape[1], exact.shape[1])
    if k is None:
        k = k_max
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= k_max:
        raise ValueError(f"k must be an integer in 1..{k_max} (the columns both arrays hold), "
                         f"got {k!r}")
    approx, exact = approx[:, :k], exact[:, :k]
    if exact.min() < 0:
        raise ValueError("ind_exact holds negative indices; exact search returns training "
                         "indices >= 0")
    exact_sorted = np.sort(exact, axis=1)
    if k > 1 and np.any(exact_sorted[:, 1:] == exact_sorted[:, :-1]):
        raise ValueError("ind_exact repeats a training index within a row; the exact "
                         "neighbours of a query are distinct")
    # Membership row by row in one searchsorted: shift each row into its own range of
    # values so that rows cannot match each other (row * span + index, span > every index).
    n = exact.shape[0]
    span = int(max(exact.max(), approx.max())) + 2
    rows = np.arange(n, dtype=np.int64)[:, None] * span
    haystack = np.sort(np.where(approx >= 0, approx + 1, 0) + rows, axis=1).ravel()
    needles = (exact + 1 + rows).ravel()
    pos = np.searchsorted(haystack, needles)
    pos = np.minimum(pos, haystack.size - 1)
    found = (haystack[pos] == needles).reshape(n, k)
    return float(found.sum(axis=1).mean() / k)
