"""The weighted kNN evaluation of image features (DINO), at fixed settings.

The protocol of DINO (Caron et al., "Emerging Properties in Self-Supervised
Vision Transformers", ICCV 2021; ``knn_classifier`` in its ``eval_knn.py``),
also used by iBOT and others to compare self-supervised features: every
feature vector is L2-normalised; for each test vector the k training vectors of
largest cosine similarity ``s`` each give their class the vote ``exp(s / T)``
(T = 0.07); classes are ranked by their summed votes; top-1 and top-5 accuracy
on the test split are reported for several k (10, 20, 100, 200).

Here that is ``KNearestNeighbor(metric="cosine", weights="softmax",
temperature=T)``: the cosine distance is ``d = 1 - s`` and the vote
``exp((1 - d) / T - m)``, with ``m`` the row's largest ``(1 - d) / T``, so it
never overflows.  That is DINO's ``exp(s / T)`` times ``exp(-m)``, one positive
factor per test vector, which changes no ranking (only float rounding differs:
an exact tie between two classes' sums could in principle resolve
differently).  DINO computes the similarities in float32 on the GPU; here the
neighbours' distances are exact float64 values (see
:mod:`imgcls.neighbors.search`), and ties are resolved by the documented rules
(neighbours at equal distance by training index; equal votes to the class of
the nearest neighbour, then the smaller class index), where ``torch.topk`` and
``sort`` leave them unspecified.  Top-5 counts the first ``min(5, k)`` ranked
classes, as DINO's ``correct.narrow(1, 0, min(5, k))`` does.

One search at the largest k serves every k: the k nearest neighbours are the
first k columns of the ``max(ks)`` nearest (rows are sorted by (distance,
index)).  The search and the votes run one block of test vectors at a time
(votes from the k neighbours only, :func:`~imgcls.neighbors.vote.vote_topk`),
so memory stays O(n_test x max(ks)) beyond the search's ``working_memory``,
whatever the number of classes.

This is an evaluation at fixed settings, not model selection: every k is
scored on the test split, so picking the best k from these numbers and
reporting its accuracy would be an optimistic estimate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._progress import track

__all__ = ["knn_evaluate", "DEFAULT_KS", "DEFAULT_TEMPERATURE", "FIXED_SETTINGS_NOTE"]

#: DINO's evaluation grid and temperature (``eval_knn.py``: ``--nb_knn 10 20 100 200``,
#: ``--temperature 0.07``).
DEFAULT_KS = (10, 20, 100, 200)
DEFAULT_TEMPERATURE = 0.07
#: Top-n accuracy reported besides top-1 (DINO's top-5).
TOP_N = 5

# the estimator parameters each approximate search uses (shown in the results)
_ANN_PARAMS = {"ivf": ("nlist", "nprobe", "random_state"),
               "hnsw": ("hnsw_m", "ef_search", "ef_construction")}

FIXED_SETTINGS_NOTE = (
    "Evaluation at fixed settings, not model selection: every k is scored on the test "
    "split; choosing k from these numbers and reporting its accuracy would overstate it.")

PROTOCOL = (
    "Weighted kNN evaluation of DINO (Caron et al. 2021, eval_knn.py): cosine similarity s "
    "between L2-normalised features; the k most similar training vectors vote exp(s / T) for "
    "their class; classes ranked by summed votes. One search at the largest k on the test "
    "split (exact unless an approximate algorithm is named), every k scored from its first k "
    "columns. Top-5 counts the first min(5, k) "
    "ranked classes. Ties: neighbours at equal distance by training index, equal votes to the "
    "class of the nearest neighbour, then the smaller class index.")


def knn_evaluate(X_train, y_train, X_test, y_test, ks: Sequence[int] = DEFAULT_KS,
                 temperature: float = DEFAULT_TEMPERATURE, *, algorithm: str = "exact",
                 ann_params: Mapping[str, Any] | None = None,
                 working_memory: float | None = None, n_jobs: int | None = None,
                 progress: bool | None = None) -> dict:
    """Top-1 and top-5 accuracy of DINO's weighted kNN classifier for every k.

    Parameters
    ----------
    X_train : array-like of shape (n_train, d)
        Training features (a memory map is searched as it is, not copied).
    y_train : array-like of shape (n_train,)
        Their labels.
    X_test : array-like of shape (n_test, d)
    y_test : array-like of shape (n_test,)
        Labels comparable with ``y_train``'s; a label absent from the training
        split is never predicted (counts as wrong).
    ks : sequence of int
        The k to score (positive; sorted, repeats dropped); the largest must not
        exceed ``n_train``.
    temperature : float > 0
    algorithm : {"exact", "ivf", "hnsw"}
        ``"ivf"``/``"hnsw"``: approximate search (``pip install imgcls[ann]``);
        the result then also holds recall@k against an exact search.
    ann_params : dict, optional
        ``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``... passed to
        :class:`~imgcls.neighbors.KNearestNeighbor`.
    working_memory : float, optional
        MiB for temporary blocks of the search (None: the global setting).
    n_jobs : int, optional
        Threads of the search.
    progress : bool, optional
        Force the progress bar on/off (default: the global setting).

    Returns
    -------
    result : dict
        ``{"protocol", "note", "params": {metric, weights, temperature, ks,
        algorithm, ...}, "n_train", "n_test", "rows": [{"k", "top1", "top5"}
        (+ "recall" when approximate), ...], "timings": {"fit", "search",
        "vote" (+ "exact_search")}}``: accuracies are fractions in [0, 1].

    Raises
    ------
    ConfigError
        ``ks`` is empty or holds a k that is not a positive integer.
    ValueError
        Shapes that do not match, labels whose length differs from the rows,
        ``max(ks)`` above the training rows, or a parameter the estimator
        refuses (the message names it).
    """
    from ..metrics import recall_at_k
    from ..selection.knn_cv import check_ks
    from . import KNearestNeighbor
    from .knn import search_block_rows
    from .vote import vote_topk

    ks = check_ks(ks)
    k_max = ks[-1]
    y_test = np.asarray(y_test)
    n_test = _num_rows(X_test, "X_test")
    if y_test.ndim != 1 or y_test.shape[0] != n_test:
        raise ValueError(f"y_test must hold one label per row of X_test ({n_test}), "
                         f"got shape {y_test.shape}")
    params = dict(k=k_max, metric="cosine", weights="softmax", temperature=temperature,
                  algorithm=algorithm, working_memory=working_memory, n_jobs=n_jobs,
                  **dict(ann_params or {}))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model = KNearestNeighbor(**params).fit(X_train, y_train)
    timings["fit"] = time.perf_counter() - t0
    exact = None
    if algorithm != "exact":
        exact = KNearestNeighbor(k=k_max, metric="cosine", working_memory=working_memory,
                                 n_jobs=n_jobs).fit(X_train, y_train)
    classes = model.classes_
    # test labels as class indices of the model; -1 where the training split lacks the class
    pos = np.clip(np.searchsorted(classes, y_test), 0, len(classes) - 1)
    y_idx = np.where(classes[pos] == y_test, pos, -1)
    y_fit = np.asarray(model.y_fit_)
    n_classes = len(classes)

    correct1 = dict.fromkeys(ks, 0)
    correct5 = dict.fromkeys(ks, 0)
    recall_sum = dict.fromkeys(ks, 0.0)
    timings.update(search=0.0, vote=0.0, **({"exact_search": 0.0} if exact else {}))
    rows, search_memory = search_block_rows(model.n_features_in_, k_max, working_memory)
    blocks = [(s, min(n_test, s + rows)) for s in range(0, n_test, rows)]
    for s, e in track(blocks, "kNN evaluation", total=len(blocks),
                      disable=None if progress is None else not progress):
        t0 = time.perf_counter()
        dist, ind = model._neighbours(X_test[s:e], k_max, search_memory)
        timings["search"] += time.perf_counter() - t0
        if exact is not None:
            t0 = time.perf_counter()
            ind_exact = exact._neighbours(X_test[s:e], k_max, search_memory)[1]
            timings["exact_search"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        neigh_y = y_fit[ind]
        truth = y_idx[s:e, None]
        for k in ks:
            ranked, _ = vote_topk(neigh_y[:, :k], dist[:, :k], n_classes, min(TOP_N, k),
                                  "softmax", temperature, "cosine")
            hit = ranked == truth
            correct1[k] += int(hit[:, 0].sum())
            correct5[k] += int(hit.any(axis=1).sum())
            if exact is not None:
                recall_sum[k] += recall_at_k(ind, ind_exact, k) * (e - s)
        timings["vote"] += time.perf_counter() - t0

    table = []
    for k in ks:
        row = {"k": k, "top1": correct1[k] / n_test, "top5": correct5[k] / n_test}
        if exact is not None:
            row["recall"] = recall_sum[k] / n_test
        table.append(row)
    given = model.get_params()
    shown = {key: given[key] for key in ("metric", "weights", "temperature", "algorithm",
                                         *_ANN_PARAMS.get(algorithm, ()))}
    return {"protocol": PROTOCOL, "note": FIXED_SETTINGS_NOTE,
            "params": {**shown, "ks": ks}, "n_train": int(y_fit.shape[0]),
            "n_test": int(n_test), "n_classes": int(n_classes), "rows": table,
            "timings": timings}


def _num_rows(X, name: str) -> int:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) < 2:
        raise ValueError(f"{name} must be an array of shape (n_samples, n_features) or images, "
                         f"got {'shape ' + str(tuple(shape)) if shape is not None else type(X).__name__}")
    if shape[0] < 1:
        raise ValueError(f"{name} holds no rows")
    return int(shape[0])
