"""The k-nearest-neighbour classifier (scikit-learn estimator API)."""

from __future__ import annotations

import numbers
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, check_is_fitted, check_X_y, validate_data

from ..config import MAX_WORKING_MEMORY
from .._validation import (CLASSIFIER_ATTRIBUTES, Array, Interval, Schema, check_n_neighbors,
                           first_nonfinite_row, flatten_images)
from . import ann
from .prepared import PreparedTrainingSet, budget_bytes
from .search import METRICS, knn_search
from .vote import WEIGHTS, vote_topk

# Queries per search call inside predict & co.: each call scans the whole
# training set, so a block is never smaller than one query block of the
# L2/cosine search (search._GEMM_QUERY_ROWS)
_MIN_SEARCH_ROWS = 1024
# Bytes the search and the vote hold per query and neighbour: up to 2k
# candidates (float32 score, int64 index, float64 exact distance, sort order and
# sorted copies: ~88 bytes per neighbour), the results (distance, index, class:
# 24) and the vote's weights with their temporaries (~16)
_BYTES_PER_NEIGHBOUR = 128
# Share of working_memory a blocked caller's query block takes; the search
# inside the block gets the rest (see search_block_rows)
_BLOCK_SHARE = 0.5


def search_block_rows(n_features, k, working_memory=None):
    """Queries per search call when a caller searches in blocks (predict, knn-eval).

    Each call scans the whole training set, so blocks are as large as half of
    ``working_memory`` MiB allows for the float32 query copy and what the search
    and the vote hold per neighbour, and at least ``_MIN_SEARCH_ROWS``.  The
    other half is the search's own, for its distance tiles and training blocks
    (:func:`~imgcls.neighbors.search.knn_search`), so a block and the search
    inside it together stay within ``working_memory``.

    Returns
    -------
    rows : int
        Queries per block.
    search_memory : float
        MiB to give the search of each block.
    """
    budget = budget_bytes(working_memory)
    per_query = n_features * 4 + k * _BYTES_PER_NEIGHBOUR
    rows = max(_MIN_SEARCH_ROWS, int(budget * _BLOCK_SHARE // per_query))
    return rows, budget * (1 - _BLOCK_SHARE) / 2**20


# uint8 pixels stay uint8 (searched as they are); float32 and float16 stay as
# they are (float16: embeddings stored at half size); every other numeric type
# is read as float64
_DTYPES = [np.float64, np.float32, np.float16, np.uint8]


def _k_within_training_set(attrs, dims, params):
    """Data-dependent rule: ``k`` cannot exceed the training rows ``predict`` searches."""
    k = (params or {}).get("k")
    if isinstance(k, numbers.Integral) and not isinstance(k, bool) and k > dims["n_samples"]:
        return "X_fit_", (f"holds {dims['n_samples']} training rows, fewer than k={k} "
                          f"neighbours")
    return None


def _nlist_within_training_set(attrs, dims, params):
    """Data-dependent rule: IVF needs at least one training row per inverted list."""
    problem = ann.nlist_problem(params, dims["n_samples"])
    return None if problem is None else ("X_fit_", problem)


def _is_sharded(X):
    """A ``ShardedArray`` (a ``features:DIR`` training set stored as several files)."""
    from ..datasets.features import ShardedArray

    return isinstance(X, ShardedArray)


def _check_finite(X):
    """Refuse NaN or infinite training values, reading ``X`` in blocks (no full-size temporary)."""
    row = first_nonfinite_row(X)
    if row is not None:
        what = "NaN" if np.isnan(X[row]).any() else "infinity"
        hint = " (float16 holds values up to 65504)" if X.dtype == np.float16 else ""
        raise ValueError(f"Input X contains {what} (row {row}){hint}.")


class KNearestNeighbor(ClassifierMixin, BaseEstimator):
    """Exact k-nearest-neighbour classifier on images or feature vectors.

    Memorises the training set; predicts from the labels of the k nearest
    training rows.  Images of shape (n, H, W, C) are flattened; ``uint8`` pixels
    are searched as they are (no float copy of the training set is kept).

    Parameters
    ----------
    k : int, default=1
        Number of neighbours that vote.
    metric : {"l1", "l2", "cosine"}, default="l1"
        ``"l1"``: sum of absolute differences (the lecture's); ``"l2"``: Euclidean;
        ``"cosine"``: ``1 - cos(x, y)``, for embeddings (a zero vector has cosine
        similarity 0 to everything).
    weights : {"uniform", "distance", "softmax"}, default="uniform"
        How neighbours vote; see :func:`imgcls.neighbors.vote.vote_scores`.
    temperature : float > 0, default=0.07
        Temperature of the ``"softmax"`` votes (DINO's kNN evaluation uses 0.07
        on cosine similarity).
    working_memory : float, optional
        MiB for temporary blocks of the search; None uses
        ``imgcls.get_config()["working_memory"]``.
    n_jobs : int, optional
        Threads for the search; None or -1 uses all cores.
    algorithm : {"exact", "ivf", "hnsw"}, default="exact"
        ``"exact"``: the exact search.  ``"ivf"`` (inverted lists) and ``"hnsw"``
        (a navigable small-world graph): approximate search through faiss
        (``pip install imgcls[ann]``), for metric ``"l2"`` or ``"cosine"``; the
        distances of the neighbours found are exact, but a true neighbour may be
        missed (measure it with :func:`imgcls.metrics.recall_at_k`).  The index
        is built on the first search and rebuilt after loading a model file
        (see :mod:`imgcls.neighbors.ann`).
    nlist : int, optional
        ``"ivf"``: inverted lists (k-means cells), at most the training rows;
        None: ``4 sqrt(n_train)``.
    nprobe : int, default=16
        ``"ivf"``: lists searched per query (more: slower, higher recall;
        ``nprobe >= nlist`` searches every list, i.e. exactly).
    hnsw_m : int, default=32
        ``"hnsw"``: links per node of the graph.
    ef_search : int, default=64
        ``"hnsw"``: candidate list length while searching (more: slower, higher recall).
    ef_construction : int, default=64
        ``"hnsw"``: candidate list length while building the graph.
    random_state : int or None, default=0
        ``"ivf"``: seed of the k-means sample and initialisation, so that the
        index (and every answer) is identical after a model file is loaded.
        None: a fresh seed each time the index is built.
    cache_memory : float, default=1024
        MiB the fitted model may keep for a float32 copy of the training rows
        (cosine: normalised), the operand of the L2/cosine matrix multiply, so
        that a search does not convert them again; 0 keeps none.  A larger
        copy is not kept: each search then converts one block at a time.  The
        float64 norms and the all-zero columns (O(n_train)) are always kept.
        None of it is saved in model files; it is recomputed on the first
        search after loading.

    Attributes
    ----------
    X_fit_ : ndarray of shape (n_train, n_features)
        The training rows (``uint8``, float16, float32 or float64), as given
        when the dtype is one of these and the rows are C-contiguous: a
        ``numpy.memmap`` stays that memmap (not read into memory; the search
        reads it block by block).  It must not be modified after ``fit``.
    y_fit_ : ndarray of shape (n_train,), int64
        Their class indices into ``classes_``.
    classes_ : ndarray of shape (n_classes,)
        The original labels.
    n_features_in_ : int
    image_shape_ : tuple of int or None
        Shape of one training image, or None for 2-D input.

    Notes
    -----
    Neighbours at equal distance are ordered by training index.  A vote tie
    goes to the tied class holding the nearest neighbour, then to the smaller
    class index.  ``predict`` is ``classes_[vote_rank(vote_scores(...))[:, 0]]``
    on the ``k`` neighbours of :meth:`kneighbors`.
    """

    # Checked by ``fit`` and the search methods (``self._validate_params()``), by
    # model files on load and by the grid searches for every grid point.
    _parameter_constraints = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions(set(METRICS))],
        "weights": [StrOptions(set(WEIGHTS))],
        "temperature": [Interval(Real, 0, np.inf, closed="neither")],
        "working_memory": [Interval(Real, 0, MAX_WORKING_MEMORY, closed="right"), None],
        # any non-zero count: -1 means every core, -2 all but one (joblib's convention)
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
        "algorithm": [StrOptions(set(ann.ALGORITHMS))],
        "nlist": [Interval(Integral, 1, None, closed="left"), None],
        "nprobe": [Interval(Integral, 1, None, closed="left")],
        "hnsw_m": [Interval(Integral, 2, ann.MAX_HNSW_M, closed="both")],
        "ef_search": [Interval(Integral, 1, ann.MAX_EF, closed="both")],
        "ef_construction": [Interval(Integral, 1, ann.MAX_EF, closed="both")],
        "random_state": [Interval(Integral, 0, 2**31 - 1, closed="both"), None],
        "cache_memory": [Interval(Real, 0, MAX_WORKING_MEMORY, closed="both")],
    }

    #: What a fitted model holds; checked by :func:`imgcls._validation.validate_learned_attributes`
    #: (e.g. when a model file is loaded).
    _learned_attribute_schema = Schema(
        dims={"n_samples": 1, "n_features": 1, "n_classes": 1},
        attributes={
            **CLASSIFIER_ATTRIBUTES,
            "X_fit_": Array(("n_samples", "n_features"), dtypes=[np.dtype(t).name for t in _DTYPES],
                            finite=True),
            "y_fit_": Array(("n_samples",), dtypes=("int64",), below="n_classes"),
        },
        rules=(_k_within_training_set, _nlist_within_training_set))

    def __init__(self, k=1, metric="l1", weights="uniform", temperature=0.07,
                 working_memory=None, n_jobs=None, algorithm="exact", nlist=None, nprobe=16,
                 hnsw_m=32, ef_search=64, ef_construction=64, random_state=0,
                 cache_memory=1024):
        self.k = k
        self.metric = metric
        self.weights = weights
        self.temperature = temperature
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.algorithm = algorithm
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.random_state = random_state
        self.cache_memory = cache_memory

    # ------------------------------------------------------------ checks ---
    def _check_k(self, k, n_train, loo=False):
        """Data-dependent rule the constraints cannot state: k <= the rows searched."""
        limit = n_train - 1 if loo else n_train
        if k > limit:
            what = ("the training set minus the left-out row" if loo else "the training set")
            raise ValueError(f"k={k} is larger than {what} ({limit} samples)")

    def _validate_X(self, X):
        X2, _ = flatten_images(X)
        return validate_data(self, X2, reset=False, dtype=_DTYPES, order="C")

    # -------------------------------------------------------------- fit ---
    def fit(self, X, y):
        """Memorise the training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
        y : array-like of shape (n_samples,)
            Class labels (integers or strings; not continuous values).

        Returns
        -------
        self
        """
        self._validate_params()
        if _is_sharded(X):
            return self._fit_sharded(X, y)
        X_in, image_shape = flatten_images(X)
        # finiteness is checked below, in blocks: scikit-learn's check makes
        # full-size temporaries, and a memory-mapped X must not be read whole
        X2, y2 = check_X_y(X_in, y, dtype=_DTYPES, order="C", y_numeric=False,
                           estimator=self, ensure_all_finite=False)
        _check_finite(X2)
        if (isinstance(X_in, np.ndarray) and X_in.dtype == X2.dtype
                and X_in.shape == X2.shape and X_in.flags.c_contiguous
                and X_in.ctypes.data == X2.ctypes.data):
            X2 = X_in  # the very array given (a memmap stays a memmap)
        check_classification_targets(y2)
        self._check_k(int(self.k), X2.shape[0])
        ann.check_fit(self, X2.shape[0])
        classes, y_idx = np.unique(y2, return_inverse=True)
        prepared = PreparedTrainingSet(X2, self._cache_bytes())
        if self.algorithm == "exact":
            prepared.prepare(self.metric, budget_bytes(self.working_memory))
        # all checks passed: only now touch the estimator
        validate_data(self, X_in, skip_check_array=True, reset=True)
        self._prepared_set = prepared
        self.X_fit_ = X2
        self.y_fit_ = y_idx.astype(np.int64).reshape(-1)
        self.classes_ = classes
        self.image_shape_ = image_shape
        return self

    def _fit_sharded(self, X, y):
        """``fit`` on a ``ShardedArray``: kept as it is, each shard searched on its own."""
        from sklearn.utils.validation import check_consistent_length, column_or_1d

        if X.dtype not in _DTYPES:
            raise ValueError(f"X: shards of dtype {X.dtype} are not searched; "
                             "use uint8, float16, float32 or float64")
        y2 = column_or_1d(y, warn=True)
        check_consistent_length(X, y2)
        for shard in X.shards:
            _check_finite(shard)
        check_classification_targets(y2)
        self._check_k(int(self.k), X.shape[0])
        ann.check_fit(self, X.shape[0])
        classes, y_idx = np.unique(y2, return_inverse=True)
        prepared = [PreparedTrainingSet(shard, self._cache_bytes() // len(X.shards))
                    for shard in X.shards]
        if self.algorithm == "exact":
            for p in prepared:
                if p.n:
                    p.prepare(self.metric, budget_bytes(self.working_memory))
        # all checks passed: only now touch the estimator
        validate_data(self, X, skip_check_array=True, reset=True)
        self._prepared_set = prepared
        self.X_fit_ = X
        self.y_fit_ = y_idx.astype(np.int64).reshape(-1)
        self.classes_ = classes
        self.image_shape_ = None
        return self

    def _kneighbors_sharded(self, Xq, k, working_memory):
        """Exact search of a ``ShardedArray`` training set, one shard at a time, merged."""
        from .shards import drop_self, search_shards

        Xt = self.X_fit_
        prepared = self._prepared()
        offsets = Xt.offsets[:-1]
        if Xq is not None:
            return search_shards(Xq, Xt.shards, offsets, k, self.metric, working_memory,
                                 n_jobs=self.n_jobs, prepared=prepared)
        # leave-one-out: the training rows are the queries, a block at a time
        dist = np.empty((Xt.shape[0], k))
        ind = np.empty((Xt.shape[0], k), dtype=np.int64)
        rows, search_memory = search_block_rows(Xt.shape[1], k + 1, working_memory)
        for start, block in Xt.iter_blocks(rows):
            d, i = search_shards(np.ascontiguousarray(block), Xt.shards, offsets, k + 1,
                                 self.metric, search_memory, n_jobs=self.n_jobs,
                                 prepared=prepared)
            stop = start + block.shape[0]
            dist[start:stop], ind[start:stop] = drop_self(d, i, start)
        return dist, ind

    # --------------------------------------------------------- neighbours ---
    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The nearest training rows of each query, exactly.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or images, optional
            None: the training set itself, each row left out of its own
            neighbours (leave-one-out, as scikit-learn).
        n_neighbors : int, optional
            Default ``k``.
        return_distance : bool

        Returns
        -------
        dist : ndarray of shape (n_queries, n_neighbors), float64
            Only when ``return_distance``.
        ind : ndarray of shape (n_queries, n_neighbors), int64
            Indices into the training set, rows sorted by (distance, index).
        """
        check_is_fitted(self)
        self._validate_params()  # set_params may have changed them since fit
        k = check_n_neighbors(n_neighbors, self.k)
        dist, ind = self._neighbours(X, k, self.working_memory)
        return (dist, ind) if return_distance else ind

    def _neighbours(self, X, k, working_memory):
        """:meth:`kneighbors` (always with distances) within ``working_memory`` MiB.

        Blocked callers (:meth:`_vote_blocks`, the kNN evaluation) hold a query
        block themselves and give the search only the rest of the budget.
        """
        Xt = self.X_fit_
        Xq = None if X is None else self._validate_X(X)
        self._check_k(k, Xt.shape[0], loo=X is None)
        if self.algorithm != "exact":
            return ann.kneighbors(self, Xt if X is None else Xq, k, exclude_self=X is None)
        if _is_sharded(Xt):
            return self._kneighbors_sharded(Xq, k, working_memory)
        return knn_search(Xt if X is None else Xq, Xt, k, self.metric, working_memory,
                          exclude_self=X is None, n_jobs=self.n_jobs, prepared=self._prepared())

    def _cache_bytes(self):
        return int(float(self.cache_memory) * 2**20)

    def _prepared(self):
        """The search's preparation of ``X_fit_``, made again when ``X_fit_`` is another array.

        ``fit`` makes it; after :func:`imgcls.io.load` (which sets ``X_fit_``
        without fitting) or when ``X_fit_`` was replaced, the first search makes
        it.  ``cache_memory`` changed by ``set_params`` applies from the next search.
        """
        prepared = getattr(self, "_prepared_set", None)
        if _is_sharded(self.X_fit_):
            shards = self.X_fit_.shards
            cache = self._cache_bytes() // len(shards)
            if (not isinstance(prepared, list) or len(prepared) != len(shards)
                    or any(p.source is not s for p, s in zip(prepared, shards))):
                prepared = [PreparedTrainingSet(s, cache) for s in shards]
                self._prepared_set = prepared
            budget = budget_bytes(self.working_memory)
            for p in prepared:
                if p.cache_bytes != cache:
                    p.set_cache_bytes(cache)
            return [p.prepare(self.metric, budget) if p.n else p for p in prepared]
        if not isinstance(prepared, PreparedTrainingSet) or prepared.source is not self.X_fit_:
            prepared = PreparedTrainingSet(self.X_fit_, self._cache_bytes())
            self._prepared_set = prepared
        elif prepared.cache_bytes != self._cache_bytes():
            prepared.set_cache_bytes(self._cache_bytes())
        return prepared.prepare(self.metric, budget_bytes(self.working_memory))

    # --------------------------------------------------------------- votes ---
    def _vote_blocks(self, X, n):
        """The votes of the queries' k neighbours, one block of queries at a time.

        Parameters
        ----------
        X : array-like
            Queries, as :meth:`kneighbors` takes them.
        n : int
            Best classes wanted per query.

        Returns
        -------
        n_queries : int
        blocks : iterator of (start, stop, ranked, scores)
            :func:`vote_topk` of queries ``start:stop``: ``ranked`` (rows,
            min(n, n_classes)) class indices, best first, and their scores.

        Notes
        -----
        One :meth:`kneighbors` call scans the whole training set, so a block is
        as large as ``working_memory`` allows for what the search and the vote
        hold per query (usually every query in one call, given ``X`` as it
        is); larger inputs are validated once and searched in slices.  Memory:
        O(rows x (k + n)) beyond the search's own blocks.
        """
        check_is_fitted(self)
        self._validate_params()  # set_params may have changed them since fit
        k = int(self.k)
        y_fit = np.asarray(self.y_fit_)
        rows, search_memory = search_block_rows(self.n_features_in_, k, self.working_memory)

        def vote(dist, ind):
            return vote_topk(y_fit[ind], dist, len(self.classes_), n, self.weights,
                             self.temperature, self.metric)

        try:
            n_queries = _num_samples(X)
        except TypeError:
            n_queries = None  # not array-like: kneighbors reports it
        if n_queries is None or n_queries <= rows:
            dist, ind = self._neighbours(X, k, search_memory)
            return dist.shape[0], iter([(0, dist.shape[0], *vote(dist, ind))])
        Xq = self._validate_X(X)

        def blocks():
            for s in range(0, n_queries, rows):
                e = min(n_queries, s + rows)
                # the feature names, if any, were checked on the whole X above
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "X does not have valid feature names")
                    dist, ind = self._neighbours(Xq[s:e], k, search_memory)
                yield (s, e, *vote(dist, ind))

        return n_queries, blocks()

    def predict_proba(self, X):
        """Share of the (weighted) vote of each class.

        The only method that builds an (n_samples, n_classes) array: its
        result, filled block by block from each query's k neighbours.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Rows sum to 1; columns follow ``classes_``.
        """
        check_is_fitted(self)
        # a row's votes go to at most k classes: their scores (bit-identical to
        # vote_scores') go into zeros, then the row is divided by its sum
        n_queries, blocks = self._vote_blocks(X, int(self.k))
        proba = np.zeros((n_queries, len(self.classes_)))
        for s, e, ranked, scores in blocks:
            block = proba[s:e]
            np.put_along_axis(block, ranked, scores, axis=1)
            block /= block.sum(axis=1, keepdims=True)
        return proba

    def predict_topk(self, X, n=5):
        """The ``n`` classes with the most votes, best first (ties as in ``predict``).

        Voted block by block from the k neighbours (no (n_samples, n_classes) array).

        Returns
        -------
        labels : ndarray of shape (n_samples, min(n, n_classes))
            Class labels; column 0 equals ``predict(X)``.  With fewer than ``n``
            classes every class is listed.
        """
        check_is_fitted(self)
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        classes = np.asarray(self.classes_)
        n_queries, blocks = self._vote_blocks(X, int(n))
        labels = np.empty((n_queries, min(int(n), len(classes))), dtype=classes.dtype)
        for s, e, ranked, _ in blocks:
            labels[s:e] = classes[ranked]
        return labels

    def predict(self, X):
        """The class with the most votes for each sample.

        Voted block by block from the k neighbours (no (n_samples, n_classes) array).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        classes = np.asarray(self.classes_)
        n_queries, blocks = self._vote_blocks(X, 1)
        y_pred = np.empty(n_queries, dtype=classes.dtype)
        for s, e, ranked, _ in blocks:
            y_pred[s:e] = classes[ranked[:, 0]]
        return y_pred

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``.

        Memory O(n_samples x k) whatever the number of classes (the votes are
        block-wise, as in :meth:`predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        score : float
        """
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))


class NearestNeighbor(KNearestNeighbor):
    """The lecture's nearest-neighbour classifier: k = 1, L1 distance.

    Parameters
    ----------
    working_memory : float, optional
    n_jobs : int, optional
        As in :class:`KNearestNeighbor`.
    """

    k = 1
    metric = "l1"
    weights = "uniform"
    temperature = 0.07
    algorithm = "exact"
    cache_memory = 0  # L1 multiplies no float32 rows

    _parameter_constraints = {p: KNearestNeighbor._parameter_constraints[p]
                              for p in ("working_memory", "n_jobs")}

    def __init__(self, working_memory=None, n_jobs=None):
        self.working_memory = working_memory
        self.n_jobs = n_jobs
