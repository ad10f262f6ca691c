"""Exact search over a training set held as several blocks of rows (shards).

Each shard is searched by :func:`~imgcls.neighbors.search.knn_search` on its
own, its indices shifted by the shard's first global row, and the per-shard
lists are merged on (distance, global index).  Every distance is computed from
the query and one training row alone, so a row's distance does not depend on
the shard it sits in, and each shard's list is sorted by the same key as the
global one: the merge is exactly the search over the concatenated rows
(indices, distances bit for bit, ties across shard boundaries included).

Used for a ``features:DIR`` training set stored as several ``.npy`` files
(:class:`imgcls.datasets.features.ShardedArray`), which no single array can
map without a copy, and by :mod:`imgcls.distributed`, where each Dask worker
searches the shards it holds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_topk", "search_shards", "drop_self"]


def merge_topk(dists, inds, k: int):
    """Merge per-part top-k lists on (distance, global index), keeping the k best.

    Parameters
    ----------
    dists, inds : list of ndarray of shape (n, k_i)
        float64 distances and integer global indices, each row sorted by
        (distance, index).
    k : int

    Returns
    -------
    dist : ndarray of shape (n, min(k, sum k_i)), float64
    ind : ndarray of shape (n, min(k, sum k_i)), int64
        Sorted by (distance, index): what one search over all parts gives.
    """
    dist = np.concatenate(dists, axis=1)
    ind = np.concatenate([np.asarray(i, dtype=np.int64) for i in inds], axis=1)
    if dist.shape[1] == 0:
        return dist, ind
    order = np.lexsort((ind, dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ind, order, axis=1)


def search_shards(Xq, shards, offsets, k: int, metric: str, working_memory=None, *,
                  n_jobs=None, prepared=None):
    """The k nearest rows of ``Xq`` over all ``shards``, with global indices.

    Parameters
    ----------
    Xq : ndarray of shape (n_query, d)
    shards : sequence of ndarray of shape (n_i, d)
    offsets : sequence of int
        Global index of each shard's first row.
    k : int
        At most the total rows; a shard with fewer rows gives all of its own.
    metric : str
    working_memory : float, optional
    n_jobs : int, optional
    prepared : sequence of PreparedTrainingSet, optional
        Each shard's preparation (``prepare``-d for ``metric``), or None.

    Returns
    -------
    dist : ndarray of shape (n_query, min(k, total rows)), float64
    ind : ndarray of shape (n_query, min(k, total rows)), int64
        Sorted by (distance, global index).
    """
    from .search import knn_search

    n = Xq.shape[0]
    dists, inds = [np.empty((n, 0))], [np.empty((n, 0), dtype=np.int64)]
    for j, (rows, offset) in enumerate(zip(shards, offsets)):
        if rows.shape[0] == 0:
            continue
        d, i = knn_search(Xq, rows, min(int(k), rows.shape[0]), metric, working_memory,
                          n_jobs=n_jobs, prepared=None if prepared is None else prepared[j])
        dists.append(d)
        inds.append(i + int(offset))
    return merge_topk(dists, inds, int(k))


def drop_self(dist, ind, start: int):
    """Leave each query row out of its own neighbours (leave-one-out).

    The rows are the training rows ``start, start + 1, ...``, searched with one
    neighbour more than wanted.  As :func:`imgcls.neighbors.search.knn_search`
    with ``exclude_self``: the row itself is removed, or the last neighbour when
    duplicates with smaller indices crowded the row out of the list.
    """
    n, kk = ind.shape
    is_self = ind == (start + np.arange(n))[:, None]
    pos = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kk - 1)
    keep = np.arange(kk)[None, :] != pos[:, None]
    return dist[keep].reshape(n, kk - 1), ind[keep].reshape(n, kk - 1)
