"""Votes of the k nearest neighbours, and the ranking of classes they give.

Split from the search so that cross-validation can search once at the largest
k and vote for every smaller k from the first columns (``ind[:, :k]``).

Two forms of the same vote:

* :func:`vote_scores` / :func:`vote_rank`: every class's score and the full
  ranking, dense (n, n_classes) arrays.  Plain numpy; the reference (oracle)
  the sparse form is tested against.
* :func:`vote_topk`: the best ``n`` classes of each row and their scores,
  computed from the k neighbours only (a row's votes go to at most k classes),
  in O(n x (k + n)) memory.  Identical results and tie rule:
  ``vote_topk(...)[0] == vote_rank(vote_scores(...), neigh_y)[:, :n]`` and
  the scores are bit-identical.  With 21,843 classes and 50,000 queries each
  dense (n x n_classes) array takes 50,000 x 21,843 x 8 bytes = 8.7 GB, and
  vote_rank builds several (scores, keys, lexsort's order); vote_topk's
  arrays are (n, k) and (n, n).
"""

from __future__ import annotations

import numbers

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
    neigh_y, neigh_dist = _check_neighbours(neigh_y, neigh_dist, n_classes)
    n = neigh_y.shape[0]
    w = vote_weights(neigh_dist, weights, temperature, metric)
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


def _check_neighbours(neigh_y, neigh_dist, n_classes):
    neigh_y = np.asarray(neigh_y)
    neigh_dist = np.asarray(neigh_dist, dtype=np.float64)
    if neigh_y.ndim != 2 or neigh_y.shape != neigh_dist.shape:
        raise ValueError("neigh_y and neigh_dist must be 2-D arrays of the same shape (n, k), "
                         f"got {neigh_y.shape} and {neigh_dist.shape}")
    if neigh_y.shape[1] < 1:
        raise ValueError("the votes need at least one neighbour per row (k >= 1)")
    if neigh_y.size and (neigh_y.min() < 0 or neigh_y.max() >= n_classes):
        raise ValueError(f"neigh_y must hold class indices in 0..{n_classes - 1}")
    return neigh_y, neigh_dist


def vote_weights(neigh_dist, weights="uniform", temperature=0.07, metric="l2"):
    """The vote of each neighbour (see :func:`vote_scores` for the weightings).

    Parameters
    ----------
    neigh_dist : ndarray of shape (n, k), float64
    weights, temperature, metric
        As in :func:`vote_scores`.

    Returns
    -------
    w : ndarray of shape (n, k), float64
        Non-negative and finite; a row's weights depend on that row only, so
        a block of rows gets the same weights as the whole array.
    """
    n, k = neigh_dist.shape
    if weights == "uniform":
        return np.ones((n, k))
    if weights == "distance":
        exact = neigh_dist == 0
        with np.errstate(divide="ignore"):
            w = 1.0 / neigh_dist
        has_exact = exact.any(axis=1)
        w[has_exact] = exact[has_exact]
        return w
    if weights == "softmax":
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        sim = 1.0 - neigh_dist if metric == "cosine" else -neigh_dist
        z = sim / float(temperature)
        return np.exp(z - z.max(axis=1, keepdims=True))
    raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")


def vote_topk(neigh_y, neigh_dist, n_classes, n=1, weights="uniform", temperature=0.07,
              metric="l2"):
    """The ``n`` classes with the most votes in each row, best first, and their scores.

    Same votes and tie rule as :func:`vote_scores` and :func:`vote_rank`, from
    the k neighbours alone: no (n_rows, n_classes) array is built.

    Parameters
    ----------
    neigh_y : array-like of int, shape (n_rows, k)
        Class indices (``0..n_classes-1``) of the neighbours, nearest first.
    neigh_dist : array-like of float, shape (n_rows, k)
    n_classes : int
    n : int >= 1
        Classes wanted per row; ``min(n, n_classes)`` are returned.
    weights, temperature, metric
        As in :func:`vote_scores`.

    Returns
    -------
    ranked : ndarray of shape (n_rows, min(n, n_classes)), int64
        Class indices, best first: equal to
        ``vote_rank(vote_scores(...), neigh_y)[:, :n]``.  Classes with a
        neighbour come first (by score, then nearest neighbour); the rest
        follow by class index.
    scores : ndarray of shape (n_rows, min(n, n_classes)), float64
        Their scores, bit-identical to the matching entries of
        :func:`vote_scores` (0.0 for a class with no neighbour).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    neigh_y, neigh_dist = _check_neighbours(neigh_y, neigh_dist, n_classes)
    w = vote_weights(neigh_dist, weights, temperature, metric)
    from ._vote_kernel import topk_votes

    n_out = min(int(n), int(n_classes))
    ranked = np.empty((neigh_y.shape[0], n_out), dtype=np.int64)
    scores = np.empty((neigh_y.shape[0], n_out))
    topk_votes(np.ascontiguousarray(neigh_y, dtype=np.int64), np.ascontiguousarray(w),
               int(n_classes), ranked, scores)
    return ranked, scores
