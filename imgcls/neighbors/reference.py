"""The lecture's nearest-neighbour classifier, written plainly: the test oracle.

One query at a time, the distance to every training row is computed with NumPy
over the whole training set, exactly as on the slides::

    distances = np.sum(np.abs(self.Xtr - X[i, :]), axis=1)

These functions are slow (one full pass over the training set per query) and
are kept only so that the fast search in :mod:`imgcls.neighbors.search` can be
checked against them.  Arithmetic is float64 throughout (the lecture's ``uint8``
subtraction would wrap around).
"""

from __future__ import annotations

import numpy as np


def reference_distances(x, X_train, metric="l1"):
    """Distances from one query ``x`` (d,) to every row of ``X_train`` (n, d), float64.

    ``"l1"``: sum of absolute differences; ``"l2"``: Euclidean; ``"cosine"``:
    ``1 - cos(x, y)``, with a zero vector's cosine similarity taken as 0 (distance
    1) and the distance clamped at 0.
    """
    Xtr = np.asarray(X_train, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if metric == "l1":
        return np.sum(np.abs(Xtr - x), axis=1)
    if metric == "l2":
        return np.sqrt(np.sum((Xtr - x) ** 2, axis=1))
    if metric == "cosine":
        dots = np.array([np.sum(row * x) for row in Xtr])
        norms = np.array([np.sqrt(np.sum(row * row)) for row in Xtr]) * np.sqrt(np.sum(x * x))
        cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
        return np.maximum(0.0, 1.0 - cos)
    raise ValueError(f"metric must be 'l1', 'l2' or 'cosine', got {metric!r}")


def reference_kneighbors(X_query, X_train, k, metric="l1"):
    """The k nearest training rows of each query, by brute force.

    Returns
    -------
    dist : ndarray of shape (n_query, k), float64
    ind : ndarray of shape (n_query, k), int64
        Sorted by distance, equal distances by training index.
    """
    X_query = np.asarray(X_query)
    n = len(X_train)
    dist = np.empty((len(X_query), k))
    ind = np.empty((len(X_query), k), dtype=np.int64)
    for i in range(len(X_query)):
        d = reference_distances(X_query[i], X_train, metric)
        order = np.lexsort((np.arange(n), d))[:k]  # by distance, then index
        dist[i], ind[i] = d[order], order
    return dist, ind


class NearestNeighborReference:
    """The lecture's ``NearestNeighbor`` class verbatim in spirit: train = memorise, predict = L1 1-NN."""

    def train(self, X, y):
        """X is N x D where each row is an example; y is 1-dimension of size N."""
        self.Xtr = X
        self.ytr = y

    def predict(self, X):
        """X is N x D where each row is an example we wish to predict a label for."""
        num_test = X.shape[0]
        Ypred = np.zeros(num_test, dtype=self.ytr.dtype)
        for i in range(num_test):
            distances = np.sum(np.abs(self.Xtr.astype(np.float64) - X[i, :]), axis=1)
            min_index = np.argmin(distances)  # first minimum = smallest index on ties
            Ypred[i] = self.ytr[min_index]
        return Ypred
