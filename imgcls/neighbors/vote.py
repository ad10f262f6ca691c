"""Votes of the k nearest neighbours, and the ranking of classes they give.

Split from the search so that cross-validation can search once at the largest
k and vote for every smaller k from the first columns (``ind[:, :k]``).
"""

from __future__ import annotations

import numpy as np

WEIGHTS = ("uniform", "distance", "softmax")


def vote_scores(neigh_y, neigh_dist, n_classes, weights="uniform", temperature=0.07,
                metric="l2"):
    """Each class's vote from the neighbours given.

    Parameters
    ----------
    neigh_y : array-like of int, shape (n, k)
        Class indices (``0..n_classes-1``) of the neighbours, nearest first.
        Only these k columns are used.
    neigh_dist : array-like of float, shape (n, k)
        Their distances.
    n_classes : int
    weights : {"uniform", "distance", "softmax"}
        ``"uniform"``: one vote per neighbour.  ``"distance"``: ``1 / d``; in a
        row with exact matches (``d == 0``) only those matches vote, one vote
        each, so a score is never NaN or infinite and a row is never all zero.
        ``"softmax"``: ``exp(similarity / temperature)`` as in the DINO kNN
        evaluation, with similarity = cosine similarity ``1 - d`` for
        ``metric="cosine"`` and ``-d`` for ``"l1"``/``"l2"``; computed with the
        row's largest similarity subtracted first, so it never overflows (this
        scales a row by a positive constant, which changes no ranking).
    temperature : float > 0
    metric : {"l1", "l2", "cosine"}
        Only used by ``"softmax"``.

    Returns
    -------
    scores : ndarray of shape (n, n_classes), float64
        Non-negative; each row has a positive sum.
    """
    neigh_y = np.asarray(neigh_y)
    neigh_dist = np.asarray(neigh_dist, dtype=np.float64)
    if neigh_y.ndim != 2 or neigh_y.shape != neigh_dist.shape:
        raise ValueError("neigh_y and neigh_dist must be 2-D arrays of the same shape (n, k), "
                         f"got {neigh_y.shape} and {neigh_dist.shape}")
    if neigh_y.shape[1] < 1:
        raise ValueError("vote_scores needs at least one neighbour per row (k >= 1)")
    if neigh_y.size and (neigh_y.min() < 0 or neigh_y.max() >= n_classes):
        raise ValueError(f"neigh_y must hold class indices in 0..{n_classes - 1}")
    n, k = neigh_y.shape
    if weights == "uniform":
        w = np.ones((n, k))
    elif weights == "distance":
        exact = neigh_dist == 0
        with np.errstate(divide="ignore"):
            w = 1.0 / neigh_dist
        has_exact = exact.any(axis=1)
        w[has_exact] = exact[has_exact]
    elif weights == "softmax":
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        sim = 1.0 - neigh_dist if metric == "cosine" else -neigh_dist
        z = sim / float(temperature)
        w = np.exp(z - z.max(axis=1, keepdims=True))
    else:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    flat = (np.arange(n)[:, None] * n_classes + neigh_y).ravel()
    # bincount adds each row's votes in column order: deterministic
    scores = np.bincount(flat, weights=w.ravel(), minlength=n * n_classes)
    return scores.reshape(n, n_classes)


def vote_rank(scores, neigh_y):
    """Classes ordered by vote, best first, with the documented tie rule.

    Ties in score go to the tied class that holds the nearest neighbour (the
    smallest column of ``neigh_y``), then to the smaller class index; classes
    with no neighbour come last, by class index.

    Parameters
    ----------
    scores : ndarray of shape (n, n_classes)
    neigh_y : array-like of int, shape (n, k)
        The same neighbours (nearest first) the scores came from.

    Returns
    -------
    ranked : ndarray of shape (n, n_classes), int64
        Class indices; ``ranked[:, 0]`` is the prediction.
    """
    scores = np.asarray(scores, dtype=np.float64)
    neigh_y = np.asarray(neigh_y)
    n, n_classes = scores.shape
    k = neigh_y.shape[1]
    rows = np.arange(n)
    first = np.full((n, n_classes), k, dtype=np.int64)
    for col in range(k - 1, -1, -1):  # nearer columns overwrite farther ones
        first[rows, neigh_y[:, col]] = col
    cls = np.broadcast_to(np.arange(n_classes), (n, n_classes))
    # lexsort: last key is primary
    return np.lexsort((cls, first, -scores), axis=1).astype(np.int64)
