"""Exact k-nearest neighbours over training shards held by Dask workers.

The training set stays on the workers.  A search sends each query batch out
once per worker; each worker searches its resident shards with imgcls's own
exact engine (:func:`imgcls.neighbors.search.knn_search`, as many threads as
the worker has) and sends back its own top k as (distance, global training
index) pairs, which the client merges on (distance, index) and votes on with
the local estimator's code.  Since each shard's search returns its rows' exact
distances sorted by (distance, index), and the global order is the same key,
the merged lists are those of one search over the concatenated rows: indices,
distances (bit for bit), votes and ties, across shard boundaries too.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, DatasetError
from .._validation import Interval, check_n_neighbors, flatten_images
from ..neighbors.knn import KNearestNeighbor
from .cluster import check_workers, require_distributed
from ..neighbors.shards import merge_topk
from .shards import hold_array, open_shard, search_shards, shard_info

__all__ = ["ShardedKNearestNeighbor"]

#: Times a query batch is retried after the cluster lost a worker (its array
#: shards are scattered again; Dask reopens its file shards by itself).
_MAX_RETRIES = 3
#: Seconds to wait for at least one worker before retrying a batch.
_WORKER_WAIT_S = 60


def _as_files(X):
    """The files behind a memory-mapped training set, else ``X`` unchanged."""
    from ..datasets.features import ShardedArray

    parts = X.shards if isinstance(X, ShardedArray) else [X]
    files = [getattr(p, "filename", None) if isinstance(p, np.memmap) else None for p in parts]
    if all(files) and (isinstance(X, ShardedArray) or isinstance(X, np.memmap)):
        # a view of part of a file would not be the whole file the worker opens
        whole = [p.offset + p.nbytes == os.path.getsize(f) for p, f in zip(parts, files)]
        if all(whole):
            return [os.fspath(f) for f in files]
    return X


class ShardedKNearestNeighbor(KNearestNeighbor):
    """:class:`~imgcls.neighbors.KNearestNeighbor` whose training rows live on Dask workers.

    Parameters
    ----------
    client : distributed.Client
        The cluster (see :func:`imgcls.distributed.connect`).
    k, metric, weights, temperature, working_memory :
        As in :class:`~imgcls.neighbors.KNearestNeighbor`; ``working_memory``
        bounds each worker's search blocks.
    batch_size : int, default=4096
        Queries sent out per batch.  Each batch costs one scan of every
        shard, so larger batches amortise the scan; each worker holds one
        batch at a time per task.
    cache_memory : float, default=1024
        As in :class:`~imgcls.neighbors.KNearestNeighbor`, per shard, on its
        worker: MiB of the largest float32 copy of a shard's rows kept between
        searches (0: none).

    Attributes
    ----------
    y_fit_ : ndarray of shape (n_train,), int64
        Class indices of all training rows, in global order (on the client).
    classes_, n_features_in_, image_shape_ :
        As in the local estimator.
    shard_rows_ : ndarray of shape (n_shards,), int64
        Rows of each shard; shard i holds global rows
        ``shard_offsets_[i] : shard_offsets_[i] + shard_rows_[i]``.
    shard_offsets_ : ndarray of shape (n_shards,), int64
    shard_workers_ : list of str
        The worker each shard was placed on (Dask may move it after a failure).
    shard_files_ : list of dict or None
        For file shards: path, size and SHA-256 recorded at ``fit``.

    Notes
    -----
    What crosses the network per batch: the batch's queries to each worker
    holding shards, and ``k`` (float64, int64) pairs per query back from each.
    Training rows never move after placement (unless a worker dies: Dask
    reopens its file shards elsewhere, and scattered shards are scattered
    again from the client's array).
    """

    _parameter_constraints = {
        **{p: KNearestNeighbor._parameter_constraints[p]
           for p in ("k", "metric", "weights", "temperature", "working_memory")},
        "client": [object],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "cache_memory": KNearestNeighbor._parameter_constraints["cache_memory"],
    }

    def __init__(self, client=None, k=1, metric="l1", weights="uniform", temperature=0.07,
                 working_memory=None, batch_size=4096, cache_memory=1024):
        self.client = client
        self.k = k
        self.metric = metric
        self.weights = weights
        self.temperature = temperature
        self.working_memory = working_memory
        self.batch_size = batch_size
        self.cache_memory = cache_memory

    # parameters the local estimator has and this one does not
    n_jobs = None
    algorithm = "exact"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------- fit ---
    def _client(self):
        require_distributed()
        if self.client is None:
            raise ConfigError("client: a distributed.Client is required "
                              "(imgcls.distributed.connect('tcp://HOST:8786') or 'local:N')")
        return self.client

    def fit(self, X, y):
        """Place the training shards on the workers.

        Parameters
        ----------
        X : ndarray, list of ndarray, list of str / path, or a memory-mapped set
            One array (cut into one shard per worker), a list of arrays (one
            shard each, any sizes, empty ones allowed), or a list of ``.npy``
            files that the workers open themselves, memory-mapped (the paths
            must be readable on the workers; the client does not read them).
            The ``X_train`` of ``load_dataset("features:DIR")`` (a
            ``numpy.memmap`` or a ``ShardedArray`` of them) counts as its
            files: each ``X_train-NNNNN.npy`` becomes a shard that a worker
            opens.
        y : array-like of shape (n_train,)
            Labels of all training rows, in shard order.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            No client, no workers, or workers with another imgcls version.
        DatasetError
            A shard file a worker cannot read or parse, shards of different
            widths or dtypes, labels whose length differs from the rows, or
            k larger than the training rows.  The estimator is left as it was.
        """
        self._validate_params()
        client = self._client()
        nthreads = check_workers(client)
        workers = sorted(nthreads)
        y = np.asarray(y)
        if y.ndim != 1:
            raise DatasetError(f"y: expected a 1-D array of labels, got shape {y.shape}")
        check_classification_targets(y)
        X = _as_files(X)
        if isinstance(X, (list, tuple)) and X and all(isinstance(p, (str, os.PathLike))
                                                      for p in X):
            placed = self._place_files(client, [os.fspath(p) for p in X], workers)
        else:
            placed = self._place_arrays(client, X, workers)
        futures, raw, infos, rows, width, dtype, image_shape, source = placed
        n_train = int(sum(rows))
        if y.shape[0] != n_train:
            client.cancel(futures + raw)
            raise DatasetError(f"y holds {y.shape[0]} labels but the shards hold {n_train} rows")
        if int(self.k) > n_train:
            client.cancel(futures + raw)
            raise DatasetError(f"k={self.k} is larger than the training set ({n_train} rows "
                               "over all shards)")
        classes, y_idx = np.unique(y, return_inverse=True)
        # all checks passed: only now touch the estimator
        self._shards = futures
        self._raw = raw
        self._source = source
        self.y_fit_ = y_idx.astype(np.int64).reshape(-1)
        self.classes_ = classes
        self.n_features_in_ = int(width)
        self.image_shape_ = image_shape
        self.shard_rows_ = np.asarray(rows, dtype=np.int64)
        self.shard_offsets_ = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        self.shard_workers_ = [workers[i % len(workers)] for i in range(len(rows))]
        self.shard_files_ = None if infos is None else [
            {"path": i.path, "size": i.size, "sha256": i.sha256} for i in infos]
        self._dtype = np.dtype(dtype)
        return self

    def _place_arrays(self, client, X, workers):
        if isinstance(X, (list, tuple)):
            parts = [flatten_images(np.asarray(p))[0] for p in X]
            image_shape = flatten_images(np.asarray(X[0]))[1] if X else None
        else:
            X2, image_shape = flatten_images(X)
            parts = [np.ascontiguousarray(p) for p in
                     np.array_split(X2, len(workers), axis=0)]
        if not parts:
            raise DatasetError("X: no shards given")
        parts = [self._check_part(p, i) for i, p in enumerate(parts)]
        width, dtype = self._common_layout([(p.shape[1], p.dtype, f"shard {i}")
                                            for i, p in enumerate(parts)])
        raw = [client.scatter(p, workers=[workers[i % len(workers)]], hash=False)
               for i, p in enumerate(parts)]
        futures = [self._hold(r, workers[i % len(workers)]) for i, r in enumerate(raw)]
        return (futures, raw, None, [p.shape[0] for p in parts], width, dtype, image_shape,
                parts)

    def _cache_bytes(self):
        return int((self.cache_memory or 0) * 2**20)

    def _hold(self, raw, worker):
        """The resident shard object made from a scattered array, on its worker."""
        return self.client.submit(hold_array, raw, self._cache_bytes(), workers=[worker],
                                  allow_other_workers=True, pure=False)

    @staticmethod
    def _check_part(p, i):
        if p.ndim != 2:
            raise DatasetError(f"shard {i}: expected 2-D rows, got shape {p.shape}")
        if p.dtype not in (np.uint8, np.float16, np.float32, np.float64):
            p = p.astype(np.float64)
        if p.dtype.kind == "f" and p.size and not np.isfinite(p).all():
            raise DatasetError(f"shard {i}: holds NaN or infinite values")
        return np.ascontiguousarray(p)

    @staticmethod
    def _common_layout(parts):
        width, dtype, where = parts[0]
        for w, d, name in parts[1:]:
            if w != width:
                raise DatasetError(f"{name} has {w} features but {where} has {width}; "
                                   "every shard must have the same width")
            if d != dtype:
                raise DatasetError(f"{name} holds {d} but {where} holds {dtype}; "
                                   "every shard must have the same dtype")
        return width, dtype

    def _place_files(self, client, paths, workers):
        where = [workers[i % len(workers)] for i in range(len(paths))]
        probes = [client.submit(shard_info, p, workers=[w], pure=False)
                  for p, w in zip(paths, where)]
        infos = []
        for path, fut in zip(paths, probes):
            try:
                infos.append(fut.result())
            except DatasetError as exc:
                raise DatasetError(f"a worker cannot read shard {path}: {exc}") from exc
            except OSError as exc:
                raise DatasetError(f"a worker cannot read shard {path}: "
                                   f"{exc.strerror or exc}") from exc
        width, dtype = self._common_layout([(i.n_features, np.dtype(i.dtype), i.path)
                                            for i in infos])
        # the recorded digest travels with the open task: a rerun of it after a
        # failure (Dask does that) refuses a file that changed in between
        futures = [client.submit(open_shard, info, self._cache_bytes(), workers=[w],
                                 allow_other_workers=True, pure=False)
                   for info, w in zip(infos, where)]
        return futures, [], infos, [i.n_rows for i in infos], width, dtype, None, None

    # ----------------------------------------------------------- search ---
    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The nearest training rows of each query over all shards, exactly.

        As :meth:`imgcls.neighbors.KNearestNeighbor.kneighbors`, except that
        ``X=None`` (leave-one-out over the training set) is not offered.
        """
        check_is_fitted(self, "shard_rows_")
        self._validate_params()
        if X is None:
            raise ConfigError("ShardedKNearestNeighbor.kneighbors needs query rows X "
                              "(leave-one-out over the shards is not offered)")
        k = check_n_neighbors(n_neighbors, self.k)
        dist, ind = self._neighbours(X, k, self.working_memory)
        return (dist, ind) if return_distance else ind

    def _neighbours(self, X, k, working_memory):
        """:meth:`kneighbors` with distances; each worker's search within ``working_memory`` MiB."""
        if X is None:
            raise ConfigError("ShardedKNearestNeighbor.kneighbors needs query rows X "
                              "(leave-one-out over the shards is not offered)")
        n_train = int(self.shard_rows_.sum())
        if k > n_train:
            raise ValueError(f"k={k} is larger than the training set ({n_train} samples)")
        Xq, _ = flatten_images(X)
        Xq = np.asarray(Xq)
        if Xq.ndim != 2 or Xq.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Xq.shape[-1] if Xq.ndim else 0} features, but "
                             f"ShardedKNearestNeighbor is expecting {self.n_features_in_}")
        if Xq.dtype not in (np.uint8, np.float16, np.float32, np.float64):
            Xq = Xq.astype(np.float64)
        if Xq.dtype.kind == "f" and not np.isfinite(Xq).all():
            raise ValueError("Input X contains NaN or infinity.")
        Xq = np.ascontiguousarray(Xq)
        dist = np.empty((Xq.shape[0], k))
        ind = np.empty((Xq.shape[0], k), dtype=np.int64)
        step = int(self.batch_size)
        for s in range(0, Xq.shape[0], step):
            e = min(Xq.shape[0], s + step)
            dist[s:e], ind[s:e] = self._search_batch(Xq[s:e], k, working_memory)
        return dist, ind

    def _by_worker(self):
        """Shard positions grouped by the worker that holds each now."""
        groups = {}
        where = self.client.who_has(self._shards)
        for i, fut in enumerate(self._shards):
            holders = sorted(where.get(fut.key, ())) or [self.shard_workers_[i]]
            groups.setdefault(holders[0], []).append(i)
        return groups

    def _search_batch(self, Xq, k, working_memory):
        distributed = require_distributed()
        # what a worker dying mid-batch can raise on the client: its stream
        # closing, or the futures that lived on it being lost
        lost = (distributed.client.FutureCancelledError, distributed.scheduler.KilledWorker,
                distributed.comm.CommClosedError, OSError)
        for attempt in range(_MAX_RETRIES + 1):
            try:
                groups = self._by_worker()
                # the batch goes to one worker; the others fetch it from there
                # (Dask's transfers), so a dead worker is never waited on here
                q = self.client.scatter(Xq, hash=False)
                tasks = [self.client.submit(
                    search_shards, q, k, self.metric, working_memory,
                    int(self.shard_rows_.sum()), [int(self.shard_offsets_[i]) for i in idx], *[self._shards[i] for i in idx],
                    workers=[w], allow_other_workers=True, pure=False)
                    for w, idx in groups.items()]
                parts = self.client.gather(tasks)
                return merge_topk([p[0] for p in parts],
                                  [p[1].astype(np.int64) for p in parts], k)
            except lost:
                if attempt == _MAX_RETRIES:
                    raise
                self.client.wait_for_workers(1, timeout=_WORKER_WAIT_S)
                self._rescatter_lost()
        raise AssertionError("unreachable")  # pragma: no cover

    def _rescatter_lost(self):
        """Scatter again the array shards whose worker died (their data is gone)."""
        if self._source is None:
            return
        workers = sorted(self.client.nthreads())
        for i, (raw, fut) in enumerate(zip(self._raw, self._shards)):
            if {raw.status, fut.status} & {"lost", "cancelled", "error"}:
                w = workers[i % len(workers)]
                self._raw[i] = self.client.scatter(self._source[i], workers=[w], hash=False)
                self._shards[i] = self._hold(self._raw[i], w)
                self.shard_workers_[i] = w
