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
* **L2 and cosine** -- candidates from a float32 matrix multiply: blocks of
  queries times blocks of training rows through numpy's BLAS sgemm into a
  reused score block ``S``, then a numba kernel (``merge_scores``) folds
  ``|t|^2 - 2 q.t`` (cosine: ``1 - q.t`` of unit vectors) into each query's
  ``k + m`` best scores.  Training columns that are zero in every row are left
  out of the product (they add nothing to ``q.t`` and the same ``sum q_c^2``
  to every distance of a query; MNIST: 67 of 784 columns).  The candidates'
  distances are then recomputed in float64 (exact for ``uint8``) and re-sorted.
  float32 cancellation can misorder near-ties, so each query is *certified*
  (see ``_certified``): every row outside the candidates is provably at true
  distance >= ``|q|^2 +`` (the (k+m)-th float32 score) - a bound on the float32
  error; when the exact k-th distance is below that, no outside row can enter
  the top k; the rare queries where it is not are searched again by brute
  force in float64 (none on MNIST).

  Why not faiss's ``knn`` (which the first version used)?  Measured on the
  2-core AVX-512 machine: numpy's OpenBLAS 0.3.31 does this sgemm at about
  169 GFLOP/s, faiss's bundled OpenBLAS 0.3.15 at 132-139 GFLOP/s; with the
  zero columns dropped as well, 10,000 x 60,000 MNIST (k = 10) takes 5.7 s
  against faiss ``IndexFlatL2``'s 6.2-6.9 s, where the faiss-based version
  took 7.6 s against 6.9 s (``python -m bench --only knn``).
  faiss stays the benchmark's anchor; the package itself no longer calls it.

Few queries (at most ``_FEW_QUERIES``, e.g. one image): no matrix multiply,
whose one-query form reads a float32 copy of the training set; instead the
exact kernels ``u8_rows_topk`` (``uint8``: L1, L2 and the dot products of
cosine in integers) and ``rows_topk`` (float input), parallel over chunks of training rows.

Per training set, the float64 norms, the all-zero columns and (within a memory
limit) the float32 rows of the matrix multiply are computed once and kept in a
:class:`~imgcls.neighbors.prepared.PreparedTrainingSet`; ``KNearestNeighbor``
makes one at ``fit``, and ``knn_search`` takes it as ``prepared=``.

dtypes: ``uint8``, float16, float32 and float64 training rows are searched as
they are.  float16 rows are converted to float32 one block at a time (exact,
as float16 -> float32 always is), so the certificate below holds unchanged;
float16 queries are converted to float32 whole.  A memory-mapped training set
is read block by block and never copied whole.

Memory: the training set is converted to float32 one block at a time (at most
a quarter of ``working_memory`` MiB; ``uint8`` input is never copied whole);
the float32 queries take another quarter (all of them when they fit, else one
block at a time) and the score block ``S`` at most half.  Beyond that only
O(n_query x k) candidates.  No n_query x n_train matrix is built.

Threads: ``n_jobs`` of them (``threads``).  L1 and few queries: numba's.  L2/cosine: one worker
thread per core, each running its own one-thread sgemm and then the serial
merge on its score block (both release the GIL); measured 12-15% faster than
a multi-threaded sgemm followed by a parallel merge, which lets OpenBLAS's
idle threads spin on the cores the merge needs.
"""

from __future__ import annotations

import contextlib
import itertools
import os

import numpy as np

from .prepared import PreparedTrainingSet, budget_bytes, columns_f32, inverse, row_sq_norms

METRICS = ("l1", "l2", "cosine")
_CODE = {"l1": 0, "l2": 1, "cosine": 2}
# training rows per block of the numba kernels: about 1 MiB, so a block stays
# in a core's L2 cache while all queries stream past it
_CACHE_BYTES = 3 << 19  # 1.5 MiB
_U24 = 2.0 ** -24
# float32 training rows per block of the L2/cosine matrix multiply (~22 MiB for
# MNIST) and queries per block: a 1024 x 8192 float32 score block (32 MiB) is
# small enough to be read back from the last-level cache by the merge kernel
_GEMM_TRAIN_ROWS = 8192
_GEMM_QUERY_ROWS = 1024
# At most this many queries take the training-row-parallel kernels: up to here
# they beat the matrix multiply on MNIST (bench/knn.py's single-query rows);
# beyond, the sgemm's reuse of each training row across queries wins.
_FEW_QUERIES = 32
# training-row chunks per thread in the few-queries kernels: a little slack
# for a core that another process slows down
_CHUNKS_PER_THREAD = 4
# below this many bytes of training rows x queries the few-queries kernels run
# on one thread: a parallel region's start (tens of microseconds, far more when
# other processes hold the cores) would cost more than it saves
_SERIAL_BYTES = 1 << 18


def _n_threads(n_jobs):
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return cpus
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return max(1, min(int(n_jobs), cpus))


_budget_bytes = budget_bytes  # the name the estimator and tests know

_POOL_SIZE = [1]  # threads allowed by the innermost ``threads`` context


def threadpool_size():
    """Threads the current ``threads`` context allows."""
    return _POOL_SIZE[0]


_BLAS = []  # one threadpoolctl controller, made on first use


def blas_limits(n):
    """Context limiting numpy's BLAS to ``n`` threads.

    ``threadpoolctl.threadpool_limits`` inspects every loaded library on each
    call (milliseconds, the whole budget of a single query); one controller,
    made once numpy's BLAS is loaded, is reused instead.
    """
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        np.dot(np.ones((2, 2)), np.ones((2, 2)))  # numpy's BLAS is loaded
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=n, user_api="blas")


@contextlib.contextmanager
def threads(n_jobs, blas=True):
    """Run numba kernels (and BLAS, with ``blas``) with ``n_jobs`` threads (None or -1: all cores)."""
    import numba

    n = _n_threads(n_jobs)
    old_numba = numba.get_num_threads()
    old_pool = _POOL_SIZE[0]
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    _POOL_SIZE[0] = n
    try:
        with blas_limits(n) if blas else contextlib.nullcontext():
            yield
    finally:
        numba.set_num_threads(old_numba)
        _POOL_SIZE[0] = old_pool


def _as_query(Xq, Xt):
    """The queries in a dtype the kernels read, matched to ``uint8`` training rows when exact.

    So float queries holding pixel values reuse the uint8 kernels; float16
    queries become float32 (exact; numba cannot read float16); otherwise the
    queries keep their dtype and the kernels convert each element to float64.
    """
    Xq = np.ascontiguousarray(Xq)
    if Xq.dtype != Xt.dtype and Xt.dtype == np.uint8 and Xq.ndim == 2:
        cast = Xq.astype(np.uint8)
        if np.array_equal(cast, Xq):
            Xq = cast
    if Xq.dtype == np.float16:
        Xq = Xq.astype(np.float32)
    return Xq


def knn_search(X_query, X_train, k, metric="l1", working_memory=None, exclude_self=False, *,
               n_jobs=None, prepared=None, _block_rows=None, _engine=None):
    """The k nearest training rows of each query, exactly.

    Parameters
    ----------
    X_query : ndarray of shape (n_query, d)
        ``uint8``, float16, float32 or float64 (other numeric types are read as float64).
    X_train : ndarray of shape (n_train, d)
        ``uint8``, float16, float32 or float64; may be a ``numpy.memmap`` (read in
        blocks, never copied whole).
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
    prepared : PreparedTrainingSet, optional
        ``X_train``'s preparation (norms, all-zero columns, float32 rows), made
        by :class:`~imgcls.neighbors.prepared.PreparedTrainingSet` for this very
        array (``prepared.source is X_train``) and reused across calls; by
        default one is made for this call.
    _block_rows : int, optional
        Force blocks of this many query and training rows (tests use 1 and
        more than the data to exercise the block logic).
    _engine : {"rows", "blocked"}, optional
        Force the few-queries kernels or the many-queries engines (tests);
        default: by the number of queries.

    Returns
    -------
    dist : ndarray of shape (n_query, k), float64
    ind : ndarray of shape (n_query, k), int64
        Sorted by (distance, training index).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if prepared is None:
        prepared = PreparedTrainingSet(X_train)
    elif prepared.source is not X_train:
        raise ValueError("prepared was made for another training set than X_train")
    X_train = prepared.X
    X_query = _as_query(X_query, X_train)
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
    if _engine is None:
        few = X_query.shape[0] <= _FEW_QUERIES and _block_rows is None
    else:
        few = _engine == "rows"
    with threads(n_jobs, blas=not few and metric != "l1"):
        if X_query.shape[0] == 0:
            dist, ind = np.empty((0, kk)), np.empty((0, kk), dtype=np.int64)
        elif few:
            dist, ind = _search_rows(X_query, prepared, kk, metric, budget)
        elif metric == "l1":
            dist, ind = _search_l1(X_query, prepared, kk, budget, _block_rows)
        else:
            dist, ind = _search_gemm(X_query, prepared, kk, metric, budget, _block_rows)
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


# ------------------------------------------------------------ few queries ---
def _search_rows(Xq, prep, k, metric, budget):
    from . import _kernels

    n = Xq.shape[0]
    code = _CODE[metric]
    od = np.full((n, k), np.inf)
    oi = np.full((n, k), -1, dtype=np.int64)
    u8 = Xq.dtype == np.uint8 and prep.X.dtype == np.uint8
    if metric == "cosine":
        qnorm, tnorm = np.sqrt(row_sq_norms(Xq, budget)), prep.norms(budget)
    else:
        qnorm = tnorm = np.empty(0)
    for ts, te in prep.kernel_blocks(budget):
        T = prep.kernel_rows(ts, te)
        tn = tnorm[ts:te] if tnorm.size else tnorm
        serial = threadpool_size() == 1 or T.nbytes * n < _SERIAL_BYTES
        chunks = max(1, min(threadpool_size() * _CHUNKS_PER_THREAD, (te - ts) // 64))
        if u8 and serial:
            _kernels.u8_rows_topk_serial(Xq, T, k, code, qnorm, tn, ts, od, oi)
        elif u8:
            _kernels.u8_rows_topk(Xq, T, k, code, qnorm, tn, ts, chunks, od, oi)
        elif serial:
            _kernels.rows_topk_serial(Xq, T, k, code, qnorm, tn, ts, od, oi)
        else:
            _kernels.rows_topk(Xq, T, k, code, qnorm, tn, ts, chunks, od, oi)
    if metric == "l2":
        od = np.sqrt(od)
    return od, oi


def _direct_blocks(Xq, prep, k, code, budget, block_rows, qnorm, tnorm, od, oi):
    """``direct_topk`` over the whole training set, one kernel block at a time."""
    from . import _kernels

    d = prep.X.shape[1]
    itemsize = 4 if prep.X.dtype == np.float16 else prep.X.dtype.itemsize  # as the kernel reads it
    tb = block_rows or max(16, _CACHE_BYTES // max(1, d * itemsize))
    for ts, te in prep.kernel_blocks(budget):
        _kernels.direct_topk(Xq, prep.kernel_rows(ts, te), k, code, tb, qnorm,
                             tnorm[ts:te] if tnorm.size else tnorm, ts, od, oi)


# --------------------------------------------------------------------- L1 ---
def _search_l1(Xq, prep, k, budget, block_rows):
    from . import _kernels

    Xt = prep.X
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
            _direct_blocks(Xq[s:e], prep, k, 0, budget, block_rows, empty, empty, od, oi)
        dist[s:e], ind[s:e] = od, oi
    return dist, ind


# ---------------------------------------------------------- L2 and cosine ---
def _search_gemm(Xq, prep, k, metric, budget, block_rows):
    from . import _kernels

    Xt = prep.X
    n, d = Xq.shape
    nt = Xt.shape[0]
    code = _CODE[metric]
    kc = min(nt, k + max(k, 8))  # candidates: k plus a margin for the certificate
    # the reference's float64 norms (the cosine formula and the certificate)
    qsq, tsq = row_sq_norms(Xq, budget), prep.sq_norms(budget)
    qnorm, tnorm = np.sqrt(qsq), prep.norms(budget)
    qinv = inverse(qnorm) if metric == "cosine" else None
    # training columns that are zero in every row are left out of the product
    # (see PreparedTrainingSet.columns); cosine normalises with the full rows'
    # norms, so the sliced dot product is the full one
    cols = prep.columns(budget)
    dc = d if cols is None else cols.size
    # Memory: a block of float32 training rows takes at most a quarter of the
    # budget, the queries in float32 another quarter (all of them when they
    # fit, else one block at a time) and the score block S the remaining half.
    tb = block_rows or max(1, min(nt, _GEMM_TRAIN_ROWS, int(budget // 4 // (dc * 4))))
    q_all = block_rows is None and n * dc * 4 <= budget // 4
    qcap = n if q_all else max(1, int(budget // 4 // (dc * 4)))
    qb = block_rows or max(1, min(n, qcap, _GEMM_QUERY_ROWS, int(budget // 2 // (tb * 4))))
    # One worker thread per core, each with a one-thread BLAS: a worker's
    # sgemm and its merge of that score block run back to back on one core
    # (no parallel region to start, and no BLAS thread left spinning while the
    # merge runs); query blocks are shared out, training blocks come in order.
    nw = max(1, min(threadpool_size(), -(-n // qb)))
    qb = min(qb, max(1, int(budget // 2 // (nw * tb * 4))))
    buffers = [np.empty(qb * min(tb, nt), dtype=np.float32) for _ in range(nw)]
    if q_all:
        q32_all = columns_f32(Xq, cols, qinv)
    # candidates so far: float32 scores, ascending, and their training indices
    cand_d = np.full((n, kc), np.inf, dtype=np.float32)
    cand_i = np.full((n, kc), -1, dtype=np.int64)
    c = np.float32(-2.0 if metric == "l2" else -1.0)
    free = list(range(nw))

    def work(block, t32, a, ts):
        s, e = block
        w = free.pop()  # list.pop is atomic: each running task owns one buffer
        try:
            q32 = q32_all[s:e] if q_all else columns_f32(
                Xq[s:e], cols, None if qinv is None else qinv[s:e])
            Sb = buffers[w][: (e - s) * t32.shape[0]].reshape(e - s, t32.shape[0])
            np.matmul(q32, t32.T, out=Sb)  # releases the GIL
            _kernels.merge_scores(Sb, a, c, ts, s, cand_d, cand_i)  # nogil
        finally:
            free.append(w)

    qblocks = _query_blocks(n, qb)
    with contextlib.ExitStack() as stack:
        pool = None
        if nw > 1:
            from concurrent.futures import ThreadPoolExecutor

            stack.enter_context(blas_limits(1))
            pool = stack.enter_context(ThreadPoolExecutor(nw))
        for ts, te in _query_blocks(nt, tb):
            t32 = prep.gemm_rows(metric, ts, te, budget)
            if metric == "l2":
                # |t|^2 in float64 (the dropped columns are zero), rounded once
                a = tsq[ts:te].astype(np.float32)
            else:
                a = np.ones(te - ts, dtype=np.float32)
            if pool is None:
                for blk in qblocks:
                    work(blk, t32, a, ts)
            else:  # one training block at a time, all its query blocks in parallel
                list(pool.map(work, qblocks, *(itertools.repeat(v) for v in (t32, a, ts))))
    # exact float64 distances of the candidates, re-sorted by (distance, index)
    exact = _exact_pairs(Xq, prep, cand_i, code, qnorm, tnorm, budget)
    order = np.lexsort((cand_i, exact), axis=1)
    exact = np.take_along_axis(exact, order, axis=1)[:, :k]
    ind = np.take_along_axis(cand_i, order, axis=1)[:, :k]
    ok = _certified(exact[:, k - 1], cand_d[:, kc - 1], qsq, tnorm, d, metric, kc >= nt)
    bad = np.flatnonzero(~ok)
    if bad.size:
        empty = np.empty(0)
        od = np.full((bad.size, k), np.inf)
        oi = np.full((bad.size, k), -1, dtype=np.int64)
        _direct_blocks(np.ascontiguousarray(Xq[bad]), prep, k, code, budget, block_rows,
                       qnorm[bad] if metric == "cosine" else empty,
                       tnorm if metric == "cosine" else empty, od, oi)
        exact[bad], ind[bad] = od, oi
    if metric == "l2":
        exact = np.sqrt(exact)
    return exact, ind


def _certified(kth_exact, last_score, qsq, tnorm, d, metric, complete):
    """Queries whose exact k nearest are provably among their candidates.

    ``kth_exact``: the exact k-th smallest candidate distance (L2: squared);
    ``last_score``: the kc-th (largest) candidate score in float32; ``qsq``:
    float64 |q|^2; ``tnorm``: float64 |t| of every training row.

    A training row outside the candidates has a computed score >= ``last_score``:
    it was either never inserted (its score not below the kc-th at the time,
    and the kc-th only decreases) or pushed out by kc smaller ones.

    L2: the true squared distance is ``|q|^2 + (|t|^2 - 2 q.t)`` and the
    computed score ``fl(fl(|t|^2) - 2 S)`` differs from the bracket by at most
    ``c (|q| + |t|)^2`` with ``c = 1.1 (d + 10) u``, u = 2^-24: rounding float64
    inputs to float32 moves q.t by <= 2.01 u |q||t| (nothing for ``uint8``:
    integers below 2^24 are exact; nothing for float16 either, whose every
    value, subnormals included, is a float32 normal number); a float32 dot product of d terms, in any
    summation order (BLAS blocks it), errs by <= d u / (1 - d u) |q||t|;
    rounding |t|^2 to float32 and the final add cost u |t|^2 and
    u (|t|^2 + 2 |q||t|); in all about (d + 3) u (|t|^2 + 2 |q||t|), below the
    bound.  Dropping all-zero training columns changes neither |t| nor q.t,
    and |q| is the full query's norm (>= the sliced one).

    Cosine: rows are unit (or zero) vectors, normalised in float64, and the
    score is ``fl(1 - S)``: at most (d + 2.01) u (1 + d u) + 2 u <= c from
    1 - q.t; the exact distance's clamp at 0 only raises it.

    Float32's range: values below its smallest normal number (2^-126) are
    rounded with an absolute error of up to 2^-150 rather than a relative one,
    so ``lower`` also subtracts ``(d + 10) 2^-146 (1 + sqrt(d) (|q| + |t|))``,
    which bounds those absolute errors (negligible for ordinary data); and a
    query is never certified when ``(|q| + max |t|)^2 >= 1e37``, where a float32
    dot product or |t|^2 could overflow to inf or NaN and drop out unseen.

    So every outside row is at true distance >= ``lower``, and a query whose
    exact k-th distance is strictly below ``lower`` has its exact top k among
    the candidates (ties at the k-th distance included, since they would be
    >= lower > the k-th).
    """
    if complete:
        return np.ones(kth_exact.shape[0], dtype=bool)
    c = 1.1 * (d + 10) * _U24
    last = last_score.astype(np.float64)
    # |q| + max |t|: 2 bounds it for unit vectors
    reach = 2.0 if metric == "cosine" else np.sqrt(qsq) + float(tnorm.max())
    tiny = (d + 10) * 2.0**-146 * (1.0 + np.sqrt(d) * reach)
    if metric == "cosine":
        lower = last - c - tiny
    else:
        lower = qsq + last - c * reach**2 - tiny
    return (kth_exact < lower) & (np.square(reach) < 1e37)


def _exact_pairs(Xq, prep, cand, code, qnorm, tnorm, budget):
    """float64 distances of each query to its candidates (``cand`` (n, kc), -1: none -> inf)."""
    from . import _kernels

    n, kc = cand.shape
    out = np.empty((n, kc))
    if prep.X.dtype != np.float16:
        _kernels.pair_dist(Xq, prep.X, cand, code, qnorm, tnorm, out)
        return out
    # float16 rows: gather each query block's candidate rows as float32
    rows = max(1, int(budget // 4 // (kc * prep.X.shape[1] * 6 + 1)))
    for s, e in _query_blocks(n, rows):
        c = cand[s:e]
        safe = np.maximum(c, 0)
        local = np.where(c >= 0, np.arange(c.size).reshape(c.shape), -1)
        _kernels.pair_dist(Xq[s:e], prep.gather_kernel_rows(safe), local, code, qnorm[s:e],
                           tnorm[safe.reshape(-1)], out[s:e])
    return out
