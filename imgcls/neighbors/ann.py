"""Approximate nearest-neighbour search through faiss (``algorithm="ivf"`` or ``"hnsw"``).

An optional path of :class:`~imgcls.neighbors.KNearestNeighbor`: the exact search
(:mod:`imgcls.neighbors.search`) stays the default.  faiss is an optional extra
(``pip install imgcls[ann]``) imported only here, only when an approximate model
is fitted or searched.

What faiss does and what imgcls does
------------------------------------
faiss proposes candidates: ``2 k`` of them per query (a margin, so that the float32
ranking faiss uses cannot push a true neighbour just past the k-th place).  imgcls
then recomputes their distances exactly, in float64 with the exact search's kernel
(:func:`imgcls.neighbors._kernels.pair_dist`), and sorts them by (distance,
training index), so the distances, the tie order and hence the votes are those of
the exact search on whichever neighbours were found.  A query for which faiss
finds fewer than ``k`` neighbours (an IVF search whose ``nprobe`` lists hold fewer
rows) is searched exactly instead, so an answer never holds a missing neighbour.

Metrics: ``"l2"`` is faiss's ``METRIC_L2`` on the float32 rows; ``"cosine"`` is
``METRIC_INNER_PRODUCT`` on rows normalised in float64 and rounded once to
float32 (a zero row stays zero: similarity 0 to everything, as in the exact
search).  ``"l1"`` is refused: IVF's k-means and HNSW's graph are built for
Euclidean geometry, and the exact L1 kernel is already the fast path for pixels.

The index
---------
Built lazily on the first search from ``X_fit_`` (which may be a memory-mapped
float16 or ``uint8`` array), added in float32 blocks of ``_ADD_BLOCK_BYTES``
(normalised through float64 for cosine: three times that held while converting),
and cached in the private attribute ``_ann_cache``.  faiss holds the index
itself in RAM: about ``4 d`` bytes a training row (plus ``8 M`` for HNSW's links).  Model
files store only the estimator's parameters: faiss's own index reader is not
hardened against crafted files, so no faiss-serialised bytes are ever read; a
loaded model rebuilds its index, identically for a fixed ``random_state``:

* IVF: the coarse quantizer is trained by faiss's k-means (seed
  ``random_state``) on a sample of ``_TRAIN_POINTS_PER_LIST x nlist`` training
  rows drawn with ``numpy.random.default_rng(random_state)``;
* HNSW: faiss draws the levels from its own fixed-seed generator, and the graph is
  built with one thread (faiss's parallel insertion order depends on thread
  timing); ``random_state`` does not apply.

"Identically" holds on the same faiss and BLAS: another CPU kernel may round
the k-means distances differently and so settle on other cells.
"""

from __future__ import annotations

import contextlib
import numbers

import numpy as np

from ..config import budget_bytes
from ..errors import ConfigError

ALGORITHMS = ("exact", "ivf", "hnsw")
ANN_METRICS = ("l2", "cosine")
# Bounds on the HNSW parameters a model file may ask for: each node holds 2 M
# level-0 links (M = 256 is eight times faiss's largest recommended setting), and
# an ef beyond 2**16 candidates per step would make one query a scan of the data.
MAX_HNSW_M = 256
MAX_EF = 2**16

# Rows of the k-means training sample per inverted list.  faiss warns below 39
# and samples 256 by default; 64 keeps training at 1.28 M x 768 with nlist = 1024
# to a few seconds a core while every centroid still sees tens of points.
_TRAIN_POINTS_PER_LIST = 64
# faiss's k-means iterations (its default is 25; the assignment has settled long before)
_KMEANS_ITERATIONS = 20
# float32 bytes of training rows added to the index at a time.  Fixed rather than
# taken from working_memory: HNSW inserts each batch level by level, so its graph
# depends on where batches split, and a reloaded model must rebuild the same one.
_ADD_BLOCK_BYTES = 32 << 20

_INSTALL = "pip install imgcls[ann]"


def _import_faiss(algorithm):
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(f"algorithm={algorithm!r} (approximate search) needs faiss, which "
                          f"is not installed: {_INSTALL}") from exc
    return faiss


def default_nlist(n_train: int) -> int:
    """Inverted lists when ``nlist`` is None: ``4 sqrt(n_train)``, within 1..n_train.

    faiss's guideline is 4 to 16 times the square root of the data set size.
    """
    return int(max(1, min(n_train, round(4 * np.sqrt(n_train)))))


def check_fit(est, n_train: int) -> None:
    """Refuse, at ``fit``, an approximate model that could not be searched.

    Raises ``ConfigError`` when faiss is missing or the metric is L1, and
    ``ValueError`` when ``nlist`` exceeds the training rows.
    """
    algorithm = est.algorithm
    if algorithm == "exact":
        return
    if est.metric not in ANN_METRICS:
        raise ConfigError(f"algorithm={algorithm!r} supports metric 'l2' or 'cosine', got "
                          f"metric={est.metric!r}; L1 is searched exactly "
                          f"(algorithm='exact')")
    problem = nlist_problem(est.get_params(), n_train)
    if problem is not None:
        raise ValueError(problem)
    _import_faiss(algorithm)


def nlist_problem(params, n_train: int):
    """Message when ``nlist`` exceeds the training rows, else None (also used on load)."""
    nlist = (params or {}).get("nlist")
    if (params or {}).get("algorithm") == "ivf" and isinstance(nlist, numbers.Integral) \
            and not isinstance(nlist, bool) and nlist > n_train:
        return (f"nlist={nlist} is larger than the training set ({n_train} rows): IVF "
                f"needs at least one training row per inverted list")
    return None


def _f32_rows(X, metric):
    """float32 copy of the rows ``X``, normalised in float64 first for cosine."""
    if metric != "cosine":
        return np.ascontiguousarray(X, dtype=np.float32)
    X64 = np.asarray(X, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", X64, X64))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (X64 * inv[:, None]).astype(np.float32)


def _rows_per_block(d, working_memory):
    # a float64 and a float32 copy of each row while converting: 12 bytes a value
    return max(1, int(budget_bytes(working_memory) // 4 // (12 * d)))


@contextlib.contextmanager
def _faiss_threads(faiss, n):
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def _build(est, faiss, n_threads):
    X = est.X_fit_
    n, d = X.shape
    metric = est.metric
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if est.algorithm == "ivf":
        nlist = default_nlist(n) if est.nlist is None else int(est.nlist)
        quantizer = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
        index.own_fields = True
        quantizer.this.disown()  # the IVF index frees it
        seed = est.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
        index.cp.seed = int(seed)
        index.cp.niter = _KMEANS_ITERATIONS
        index.cp.max_points_per_centroid = _TRAIN_POINTS_PER_LIST
        n_sample = min(n, _TRAIN_POINTS_PER_LIST * nlist)
        rows = np.sort(np.random.default_rng(seed).choice(n, size=n_sample, replace=False))
        with _faiss_threads(faiss, n_threads):
            index.train(_f32_rows(X[rows], metric))
        add_threads = n_threads
    else:
        index = faiss.IndexHNSWFlat(d, int(est.hnsw_m), faiss_metric)
        index.hnsw.efConstruction = int(est.ef_construction)
        add_threads = 1  # a deterministic graph: see the module docstring
    step = max(1, _ADD_BLOCK_BYTES // (4 * d))
    with _faiss_threads(faiss, add_threads):
        for s in range(0, n, step):
            index.add(_f32_rows(X[s:s + step], metric))
    return index


def _index(est, faiss, n_threads):
    """The cached index of ``est``, built when missing or built for other settings."""
    key = (est.algorithm, est.metric, est.nlist, est.hnsw_m, est.ef_construction,
           est.random_state)
    cache = getattr(est, "_ann_cache", None)
    if cache is not None and cache[0] is est.X_fit_ and cache[1] == key:
        return cache[2]
    est._ann_cache = None  # free the old index before building the new one
    index = _build(est, faiss, n_threads)
    # holding X_fit_ itself (not its id) so that a refit is always noticed
    est._ann_cache = (est.X_fit_, key, index)
    return index


def _exact_rows(Xq, Xt, cand, metric):
    """float64 distances of each query to its candidate rows, sorted by (distance, index).

    Gathers the candidate rows (float16 as float32: exact), so that a memory-mapped
    training set is read only where candidates lie.
    """
    from . import _kernels
    from .search import _CODE

    nq, kc = cand.shape
    valid = cand >= 0
    flat = np.where(valid, cand, 0).ravel()
    rows = Xt[flat]
    if rows.dtype not in (np.uint8, np.float32, np.float64):
        rows = rows.astype(np.float32)
    if Xq.dtype not in (np.uint8, np.float32, np.float64):
        Xq = Xq.astype(np.float32)
    local = np.where(valid, np.arange(nq * kc).reshape(nq, kc), -1)
    if metric == "cosine":
        q64 = Xq.astype(np.float64)
        r64 = rows.astype(np.float64)
        qnorm = np.sqrt(np.einsum("ij,ij->i", q64, q64))
        tnorm = np.sqrt(np.einsum("ij,ij->i", r64, r64))
    else:
        qnorm = tnorm = np.empty(0)
    out = np.empty((nq, kc))
    _kernels.pair_dist(np.ascontiguousarray(Xq), np.ascontiguousarray(rows), local,
                       _CODE[metric], qnorm, tnorm, out)
    order = np.lexsort((np.where(valid, cand, np.iinfo(np.int64).max), out), axis=1)
    return np.take_along_axis(out, order, axis=1), np.take_along_axis(cand, order, axis=1)


def kneighbors(est, Xq, k, exclude_self=False):
    """The approximate ``k`` nearest training rows of each query row of ``Xq``.

    Parameters
    ----------
    est : KNearestNeighbor
        Fitted, with ``algorithm`` "ivf" or "hnsw".
    Xq : ndarray of shape (n_queries, n_features)
        Validated queries; with ``exclude_self`` they are ``est.X_fit_`` itself.
    k : int
        1 <= k <= n_train (n_train - 1 with ``exclude_self``).
    exclude_self : bool
        Leave each training row out of its own neighbours (``kneighbors(None)``):
        the row itself is removed, or the farthest one when it was not found.

    Returns
    -------
    dist : ndarray of shape (n_queries, k), float64
        Exact distances (L2: Euclidean; cosine: ``1 - cos``) of the rows found.
    ind : ndarray of shape (n_queries, k), int64
        Training indices, rows sorted by (distance, index).
    """
    from .search import _drop_self, _n_threads, knn_search

    faiss = _import_faiss(est.algorithm)
    check_fit(est, est.X_fit_.shape[0])
    Xt = est.X_fit_
    n_train, d = Xt.shape
    n = Xq.shape[0]
    kk = k + 1 if exclude_self else k
    kc = min(n_train, 2 * kk)
    n_threads = _n_threads(est.n_jobs)
    index = _index(est, faiss, n_threads)
    if est.algorithm == "ivf":
        index.nprobe = min(int(est.nprobe), index.nlist)
    else:
        index.hnsw.efSearch = int(est.ef_search)
    dist = np.empty((n, kk))
    ind = np.empty((n, kk), dtype=np.int64)
    # query blocks: their float32 copy plus the gathered candidate rows
    step = max(1, _rows_per_block(d, est.working_memory) // (1 + kc))
    with _faiss_threads(faiss, n_threads):
        for s in range(0, n, step):
            q = Xq[s:s + step]
            _, cand = index.search(_f32_rows(q, est.metric), kc)
            dd, ii = _exact_rows(q, Xt, cand.astype(np.int64, copy=False), est.metric)
            dist[s:s + step], ind[s:s + step] = dd[:, :kk], ii[:, :kk]
    if est.metric == "l2":
        dist = np.sqrt(dist)  # pair_dist gives squared L2
    missing = np.flatnonzero(ind[:, kk - 1] < 0)
    if missing.size:
        # fewer than kk found (IVF lists too small for nprobe): search those exactly;
        # with exclude_self the row itself is among them and dropped below
        dist[missing], ind[missing] = knn_search(
            np.ascontiguousarray(Xq[missing]), Xt, kk, est.metric, est.working_memory,
            n_jobs=est.n_jobs)
    if exclude_self:
        dist, ind = _drop_self(dist, ind)
    return dist, ind
