"""k-fold cross-validation of k-nearest neighbours from ONE search per fold and metric.

The lecture's recipe is to refit the classifier for every (k, metric, weighting)
and every fold.  The neighbour search is all the cost, and the k nearest
neighbours are the first k columns of the ``max(ks)`` nearest ones (the search
sorts rows by (distance, training index), so this holds even with tied
distances).  So for each fold and metric this module runs one search at
``max(ks)`` and scores every k and weighting from that one neighbour list with
:func:`imgcls.neighbors.vote.vote_topk` -- the function
``KNearestNeighbor.predict`` uses -- giving exactly the accuracies refitting
each combination would give, ``len(ks) * len(weights)`` times cheaper.  The
votes come from the k neighbours alone: memory O(n_val x max(ks)), whatever
the number of classes.

Only training data ever comes here: the folds are cut from the training split,
and the test split is evaluated once, after choosing (see
:func:`imgcls.pipeline.run_study`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .._progress import track
from .._validation import check_grid_points, flatten_images
from ..errors import ConfigError
from .splits import check_seed, contiguous_rows, stratified_kfold

__all__ = ["knn_cross_validate", "choose_best", "check_ks", "KNN_WEIGHT_ORDER"]

#: Tie order of the weightings in :func:`choose_best`: the plain vote first.
KNN_WEIGHT_ORDER = ("uniform", "distance", "softmax")


def check_ks(ks) -> list[int]:
    """A grid of k, each checked by ``KNearestNeighbor``'s constraint; sorted, without repeats.

    Raises
    ------
    ConfigError
        ``ks`` is not a list (or one int), is empty, or holds a k the
        constraint refuses (the message names that k and what is allowed).
    """
    from ..neighbors import KNearestNeighbor

    if isinstance(ks, (int, np.integer)) and not isinstance(ks, (bool, np.bool_)):
        ks = [ks]
    try:
        values = list(ks)
    except TypeError:
        raise ConfigError(f"ks must be a list of positive integers, got {ks!r}") from None
    if not values:
        raise ConfigError("ks is empty: give at least one k")
    check_grid_points(KNearestNeighbor(), [{"k": k} for k in values], where="ks grid")
    return sorted({int(k) for k in values})


def _names(values, what: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    values = list(dict.fromkeys(values))
    if not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{what} must be a non-empty list of names, got {values!r}")
    return values


def _resolve_folds(y_idx: np.ndarray, folds, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, (bool, np.bool_)):
        return stratified_kfold(y_idx, int(folds), seed)
    try:
        splits = [(np.asarray(tr, dtype=np.int64), np.asarray(va, dtype=np.int64))
                  for tr, va in folds]
    except (TypeError, ValueError):
        raise ConfigError("folds must be an integer >= 2 or a list of (train_idx, val_idx) "
                          f"pairs, got {folds!r}") from None
    n = y_idx.shape[0]
    if not splits:
        raise ConfigError("folds is an empty list of splits")
    for i, (tr, va) in enumerate(splits):
        if tr.size == 0 or va.size == 0 or tr.min() < 0 or va.min() < 0 \
                or tr.max() >= n or va.max() >= n:
            raise ConfigError(f"fold {i}: indices must be non-empty and within 0..{n - 1}")
        if np.intersect1d(tr, va).size:
            raise ConfigError(f"fold {i}: training and validation indices overlap")
    return splits


def _fold_neighbors(tr, va, metric, k_max, *, X, y_idx, temperature, working_memory, n_jobs):
    """The k_max neighbours of a fold's validation rows among its training rows.

    A top-level function of its arguments alone, so a Dask worker can run it
    (with the worker's threads when ``n_jobs`` is None).
    """
    from ..distributed.tasks import worker_threads
    from ..neighbors import KNearestNeighbor

    # the fold's training rows are searched once (all its validation rows in one
    # call), so a cached float32 copy of them would only cost memory
    model = KNearestNeighbor(k=k_max, metric=metric, temperature=temperature,
                             working_memory=working_memory, cache_memory=0,
                             n_jobs=worker_threads(n_jobs) if n_jobs is None else n_jobs)
    # rows laid out contiguously (the study's feature rows) are searched in place
    model.fit(contiguous_rows(X, tr), y_idx[tr])
    return model.kneighbors(contiguous_rows(X, va), n_neighbors=k_max)


def knn_cross_validate(X, y, ks: Sequence[int], metrics: Sequence[str] = ("l1", "l2"),
                       weights: Sequence[str] = ("uniform",), folds=5, seed: int = 0,
                       temperature: float = 0.07, working_memory: float | None = None,
                       n_jobs: int | None = None, progress: bool | None = None,
                       client=None) -> list[dict]:
    """Cross-validated accuracy of kNN for every (metric, k, weighting) in a grid.

    For each fold and metric, one :class:`~imgcls.neighbors.KNearestNeighbor`
    is fitted on the fold's training part and searched once at ``max(ks)``; every
    k and weighting is then scored from the first k columns of that one
    neighbour list.  The accuracies equal those of refitting
    ``KNearestNeighbor(k, metric, weights)`` for each combination.

    Parameters
    ----------
    X : array-like of shape (n_samples, H, W, C) or (n_samples, n_features)
        Training data only (never the test split).
    y : array-like of shape (n_samples,)
        Labels (any values; mapped to class indices internally).
    ks : sequence of int
        The k to try (positive; repeats dropped).
    metrics : sequence of str
        Distance metrics, as ``KNearestNeighbor(metric=...)`` takes them.
    weights : sequence of str
        Vote weightings, as ``KNearestNeighbor(weights=...)`` takes them.
    folds : int or list of (train_idx, val_idx)
        The number of seeded stratified folds (:func:`stratified_kfold`), or
        the splits themselves (e.g. to compare with another tool on the same folds).
    seed : int
        Seed of the fold split.
    temperature : float
        Passed to the vote (used by a temperature-weighted vote).
    working_memory : float, optional
        MiB for one block of the neighbour search (None: the global setting).
    n_jobs : int, optional
        Threads for the neighbour search.
    progress : bool, optional
        Force the progress bar on/off (default: the global setting).
    client : distributed.Client, optional
        Run each (fold, metric) search on this Dask cluster (the data are
        scattered once); the table is identical to a local run's.

    Returns
    -------
    table : list of dict
        One row per (metric, weights, k), in that nesting order, each
        ``{"metric", "k", "weights", "fold_scores": [acc per fold], "mean", "std"}``
        (``std`` is the population standard deviation over folds, as
        scikit-learn's ``GridSearchCV`` reports it).  This is the format
        :func:`imgcls.plots.plot_cv_curve` and :func:`choose_best` take.

    Raises
    ------
    ConfigError
        An empty grid, a grid point ``KNearestNeighbor``'s constraints refuse
        (checked for every (metric, weights, k) before any search; the message
        names the point, the parameter and what is allowed), or a k larger
        than a fold's training part (naming k and the fold size).
    """
    from ..neighbors import KNearestNeighbor
    from ..neighbors.vote import vote_topk

    ks = check_ks(ks)
    metrics = _names(metrics, "metrics")
    weights = _names(weights, "weights")
    seed = check_seed(seed)
    X, _ = flatten_images(np.asarray(X))
    y = np.asarray(y)
    if y.ndim != 1 or X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ConfigError(f"X must be (n_samples, ...) and y (n_samples,) with the same n; "
                          f"got X {X.shape}, y {y.shape}")
    # every (metric, weights, k) as the estimator would take it, before any search
    check_grid_points(
        KNearestNeighbor(),
        [{"k": k, "metric": m, "weights": w, "temperature": temperature,
          "working_memory": working_memory, "n_jobs": n_jobs}
         for m in metrics for w in weights for k in ks], where="kNN grid")
    classes, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.astype(np.int64)
    n_classes = len(classes)
    splits = _resolve_folds(y_idx, folds, seed)
    k_max = ks[-1]
    for i, (tr, _va) in enumerate(splits):
        if k_max > tr.size:
            raise ConfigError(f"k={k_max} is larger than the training part of fold {i} "
                              f"({tr.size} samples); use k <= {min(s[0].size for s in splits)} "
                              f"or fewer folds")

    from ..distributed.tasks import run_tasks

    scores = {(m, w, k): [] for m in metrics for w in weights for k in ks}
    steps = [(i, m) for i in range(len(splits)) for m in metrics]
    searches = run_tasks(_fold_neighbors,
                         [(tr, va, m, k_max) for i, m in steps for tr, va in [splits[i]]],
                         shared={"X": X, "y_idx": y_idx, "temperature": temperature,
                                 "working_memory": working_memory, "n_jobs": n_jobs},
                         client=client)
    for (i, metric), (dist, ind) in track(zip(steps, searches), "kNN cross-validation",
                                          total=len(steps),
                                          disable=None if progress is None else not progress):
        tr, va = splits[i]
        neigh_y = y_idx[tr][ind]
        y_val = y_idx[va]
        for w in weights:
            for k in ks:
                ranked, _ = vote_topk(neigh_y[:, :k], dist[:, :k], n_classes, 1, weights=w,
                                      temperature=temperature, metric=metric)
                pred = ranked[:, 0]
                scores[(metric, w, k)].append(float(np.mean(pred == y_val)))

    return [{"metric": m, "k": k, "weights": w, "fold_scores": s,
             "mean": float(np.mean(s)), "std": float(np.std(s))}
            for (m, w, k), s in scores.items()]


def choose_best(table: Iterable[dict], metric_order: Sequence[str] | None = None) -> dict:
    """The row of a cross-validation table to use, by a fixed documented rule.

    Rule: the highest mean accuracy.  Means equal to within 1e-12 are ties,
    broken (1) by the smaller k (the smoother, cheaper classifier), then
    (2) by the weighting in the order ``uniform, distance, softmax`` (the plain
    vote first; other names after these, alphabetically), then (3) by the metric
    in ``metric_order`` (default: the order the metrics first appear in
    ``table``, i.e. the order they were given to :func:`knn_cross_validate`).

    Parameters
    ----------
    table : iterable of dict
        Rows as :func:`knn_cross_validate` returns them.
    metric_order : sequence of str, optional

    Returns
    -------
    row : dict
        The chosen row (the same dict object as in ``table``).
    """
    rows = list(table)
    if not rows:
        raise ConfigError("the cross-validation table is empty: nothing to choose from")
    order = list(metric_order) if metric_order is not None else \
        list(dict.fromkeys(r["metric"] for r in rows))
    best_mean = max(r["mean"] for r in rows)
    tied = [r for r in rows if r["mean"] >= best_mean - 1e-12]

    def rank(r):
        w = r["weights"]
        w_rank = (KNN_WEIGHT_ORDER.index(w), "") if w in KNN_WEIGHT_ORDER else (len(KNN_WEIGHT_ORDER), w)
        m = r["metric"]
        m_rank = order.index(m) if m in order else len(order)
        return (r["k"], w_rank, m_rank, m)

    return min(tied, key=rank)
