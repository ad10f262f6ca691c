"""Exact k-nearest-neighbour search in bounded memory.

``knn_search`` returns, for every query, the k training rows at the smallest
distance, sorted by (distance, training index), with float64 distances that
equal the brute-force reference (:mod:`imgcls.neighbors.reference`) up to
float64 rounding (exactly, for ``uint8`` input: integer arithmetic).

Two engines:

* **L1** -- a numba kernel (:mod:`imgcls.neighbors._kernels`): ``uint8`` rows go
  through the CPU's sum-of-absolute-differences instruction, exact in integers;
  float rows are summed in float64.  Each query keeps its k best in a small
  sorted array inside the kernel, so memory beyond the inputs is O(n_query x k).
* **L2 and cosine** -- faiss's matrix-multiply search (float32 sgemm on blocks)
  proposes ``k + m`` candidates per query; their distances are recomputed in
  float64 (exact for ``uint8``) and re-sorted.  float32 cancellation in
  ``|x|^2 + |y|^2 - 2 x.y`` can misorder near-ties, so each query is
  *certified*: the computed float32 distance of any row differs from the true
  one by at most ``c (|x| + |y|)^2`` with ``c = 1.1 (d + 10) 2^-24`` (the
  standard bound for a d-term float32 dot product, plus the rounding of the
  inputs to float32), so every row outside the candidates is at true distance
  >= (the (k+m)-th float32 distance) - that bound.  When the exact k-th
  distance is below that, no outside row can enter the top k; the rare queries
  where it is not are searched again by brute force in float64.

Memory: the training set is converted to float32 for faiss one block at a time
(``uint8`` input is never copied whole); a block of training rows takes at most
half of ``working_memory`` MiB and a block of queries a quarter, on top of
faiss's own fixed 4096 x 1024 float32 distance tile (16 MiB).  No
n_query x n_train matrix is built.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..config import get_config

METRICS = ("l1", "l2", "cosine")
_CODE = {"l1": 0, "l2": 1, "cosine": 2}
# training rows per block of the numba kernels: about 1 MiB, so a block stays
# in a core's L2 cache while all queries stream past it
_CACHE_BYTES = 3 << 19  # 1.5 MiB
_U24 = 2.0 ** -24


def _n_threads(n_jobs):
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return cpus
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return max(1, min(int(n_jobs), cpus))


@contextlib.contextmanager
def threads(n_jobs):
    """Run numba kernels and faiss with ``n_jobs`` threads (None or -1: all cores)."""
    import faiss
    import numba

    n = _n_threads(n_jobs)
    old_numba = numba.get_num_threads()
    old_faiss = faiss.omp_get_max_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old_numba)
        faiss.omp_set_num_threads(old_faiss)


def _budget_bytes(working_memory):
    wm = get_config()["working_memory"] if working_memory is None else working_memory
    if not wm > 0:
        raise ValueError(f"working_memory must be a positive number of MiB, got {wm!r}")
    return float(wm) * 2**20


def _as_common(Xq, Xt):
    """Match the query dtype to the training dtype when that loses nothing.

    So float queries holding pixel values reuse the uint8 kernel; otherwise both
    keep their dtypes and the kernel converts each element to float64.
    """
    Xt = np.ascontiguousarray(Xt)
    Xq = np.ascontiguousarray(Xq)
    if Xq.dtype != Xt.dtype and Xt.dtype.kind in "uif":
        cast = Xq.astype(Xt.dtype)
        if np.array_equal(cast, Xq):
            Xq = cast
    return Xq, Xt


def knn_search(X_query, X_train, k, metric="l1", working_memory=None, exclude_self=False, *,
               n_jobs=None, _block_rows=None):
    """The k nearest training rows of each query, exactly.

    Parameters
    ----------
    X_query : ndarray of shape (n_query, d)
        ``uint8``, float32 or float64 (other numeric types are read as float64).
    X_train : ndarray of shape (n_train, d)
    k : int
        1 <= k <= n_train (n_train - 1 with ``exclude_self``).
    metric : {"l1", "l2", "cosine"}
    working_memory : float, optional
        MiB for temporary blocks; default ``imgcls.get_config()["working_memory"]``.
    exclude_self : bool
        ``X_query`` is ``X_train``: leave each row out of its own neighbours (as
        scikit-learn's ``kneighbors()`` with no X: the row itself is removed, or
        the farthest one if duplicates with smaller indices crowd it out).
    n_jobs : int, optional
        Threads; None or -1 for all cores.
    _block_rows : int, optional
        Force blocks of this many query and training rows (tests use 1 and
        more than the data to exercise the block logic).

    Returns
    -------
    dist : ndarray of shape (n_query, k), float64
    ind : ndarray of shape (n_query, k), int64
        Sorted by (distance, training index).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    X_query, X_train = _as_common(X_query, X_train)
    if X_query.ndim != 2 or X_train.ndim != 2 or X_query.shape[1] != X_train.shape[1]:
        raise ValueError(f"X_query {X_query.shape} and X_train {X_train.shape} must be 2-D "
                         "with the same number of features")
    n_train = X_train.shape[0]
    limit = n_train - 1 if exclude_self else n_train
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= limit):
        raise ValueError(f"k must be an integer in 1..{limit} "
                         f"({'training rows - 1, leaving each row out' if exclude_self else 'training rows'}), got {k!r}")
    if exclude_self and X_query.shape[0] != n_train:
        raise ValueError("exclude_self needs X_query to be the training set itself")
    budget = _budget_bytes(working_memory)
    kk = int(k) + 1 if exclude_self else int(k)
    with threads(n_jobs):
        if X_query.shape[0] == 0:
            dist, ind = np.empty((0, kk)), np.empty((0, kk), dtype=np.int64)
        elif metric == "l1":
            dist, ind = _search_l1(X_query, X_train, kk, budget, _block_rows)
        else:
            dist, ind = _search_gemm(X_query, X_train, kk, metric, budget, _block_rows)
    if exclude_self:
        dist, ind = _drop_self(dist, ind)
    return dist, ind


def _drop_self(dist, ind):
    n, kk = ind.shape
    is_self = ind == np.arange(n)[:, None]
    pos = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kk - 1)
    keep = np.arange(kk)[None, :] != pos[:, None]
    return dist[keep].reshape(n, kk - 1), ind[keep].reshape(n, kk - 1)


def _query_blocks(n, rows):
    return [(s, min(n, s + rows)) for s in range(0, n, max(1, rows))]


def _inverse(norms):
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


# --------------------------------------------------------------------- L1 ---
def _search_l1(Xq, Xt, k, budget, block_rows):
    from . import _kernels

    n, d = Xq.shape
    tb = block_rows or max(16, _CACHE_BYTES // max(1, d * Xt.dtype.itemsize))
    # queries in blocks only to bound what one kernel call holds; the kernel's
    # own memory is the (rows, k) result
    qb = block_rows or max(1024, int(budget // 4 // (d * Xq.dtype.itemsize + 16 * k)))
    dist = np.empty((n, k))
    ind = np.empty((n, k), dtype=np.int64)
    empty = np.empty(0)
    for s, e in _query_blocks(n, qb):
        od = np.full((e - s, k), np.inf)
        oi = np.full((e - s, k), -1, dtype=np.int64)
        if Xq.dtype == np.uint8 and Xt.dtype == np.uint8:
            _kernels.l1_topk_u8(Xq[s:e], Xt, k, tb, od, oi)
        else:
            _kernels.direct_topk(Xq[s:e], Xt, k, 0, tb, empty, empty, od, oi)
        dist[s:e], ind[s:e] = od, oi
    return dist, ind


# ---------------------------------------------------------- L2 and cosine ---
def _to_f32(X, inv=None):
    if inv is None:
        return np.ascontiguousarray(X, dtype=np.float32)
    # normalise in float64, round once to float32
    return (X.astype(np.float64) * inv[:, None]).astype(np.float32)


def _search_gemm(Xq, Xt, k, metric, budget, block_rows):
    import faiss

    from . import _kernels

    n, d = Xq.shape
    nt = Xt.shape[0]
    code = _CODE[metric]
    kc = min(nt, k + max(k, 8))  # candidates: k plus a margin for the certificate
    if metric == "cosine":
        qnorm, tnorm = _row_norms_blocked(Xq, budget), _row_norms_blocked(Xt, budget)
        qinv, tinv = _inverse(qnorm), _inverse(tnorm)
        fmetric = faiss.METRIC_INNER_PRODUCT
    else:
        qinv = tinv = qnorm = tnorm = None
        fmetric = faiss.METRIC_L2
    tb = block_rows or max(1, int(budget // 2 // (d * 4)))
    qb = block_rows or max(1, int(budget // 4 // (d * 4 + kc * 48)))
    # candidates so far, as faiss distances (ascending; cosine: 1 - similarity)
    cand_d = np.full((n, kc), np.inf, dtype=np.float32)
    cand_i = np.full((n, kc), -1, dtype=np.int64)
    for ts, te in _query_blocks(nt, tb):
        t32 = _to_f32(Xt[ts:te], None if tinv is None else tinv[ts:te])
        kb = min(kc, te - ts)
        for s, e in _query_blocks(n, qb):
            q32 = _to_f32(Xq[s:e], None if qinv is None else qinv[s:e])
            D, I = faiss.knn(q32, t32, kb, fmetric)
            if fmetric == faiss.METRIC_INNER_PRODUCT:
                D = 1.0 - D
            I += ts
            both_d = np.concatenate([cand_d[s:e], D], axis=1)
            both_i = np.concatenate([cand_i[s:e], I], axis=1)
            order = np.argsort(both_d, axis=1, kind="stable")[:, :kc]
            cand_d[s:e] = np.take_along_axis(both_d, order, axis=1)
            cand_i[s:e] = np.take_along_axis(both_i, order, axis=1)
        del t32
    # exact float64 distances of the candidates, re-sorted by (distance, index)
    empty = np.empty(0)
    exact = np.empty((n, kc))
    _kernels.pair_dist(Xq, Xt, cand_i, code, empty if qnorm is None else qnorm,
                       empty if tnorm is None else tnorm, exact)
    order = np.lexsort((cand_i, exact), axis=1)
    exact = np.take_along_axis(exact, order, axis=1)[:, :k]
    ind = np.take_along_axis(cand_i, order, axis=1)[:, :k]
    # certificate: every non-candidate is at true distance >= lower
    if kc >= nt:
        ok = np.ones(n, dtype=bool)
    else:
        c = 1.1 * (d + 10) * _U24
        if metric == "cosine":
            slack = np.full(n, c)
        else:
            qn = _row_norms_blocked(Xq, budget)
            tmax = float(_row_norms_blocked(Xt, budget).max())
            slack = c * (qn + tmax) ** 2
        lower = cand_d[:, kc - 1].astype(np.float64) - slack
        ok = exact[:, k - 1] < lower
    bad = np.flatnonzero(~ok)
    if bad.size:
        tb1 = block_rows or max(16, _CACHE_BYTES // max(1, d * Xt.dtype.itemsize))
        od = np.full((bad.size, k), np.inf)
        oi = np.full((bad.size, k), -1, dtype=np.int64)
        _kernels.direct_topk(np.ascontiguousarray(Xq[bad]), Xt, k, code, tb1,
                             empty if qnorm is None else qnorm[bad],
                             empty if tnorm is None else tnorm, od, oi)
        exact[bad], ind[bad] = od, oi
    if metric == "l2":
        exact = np.sqrt(exact)
    return exact, ind


def _row_norms_blocked(X, budget):
    """float64 |x| per row, as the reference computes it, converted block by block."""
    out = np.empty(X.shape[0])
    rows = max(1, int(budget // 4 // (X.shape[1] * 8 + 1)))
    for s, e in _query_blocks(X.shape[0], rows):
        blk = X[s:e].astype(np.float64)
        out[s:e] = np.sqrt(np.einsum("ij,ij->i", blk, blk))
    return out
