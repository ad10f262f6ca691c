"""k-means (Lloyd's iterations) on float32 rows, assignments by blocked BLAS sgemm.

Coates, Lee and Ng's ``run_kmeans`` is full-batch Lloyd: each iteration assigns
every row to its nearest centroid (argmin of ``|c|^2 - 2 x.c``, the row's own
norm being the same for every centroid) and moves each centroid to the mean
of its rows.  Here the products ``x.c`` come from float32 matrix multiplies of
row blocks within the working-memory budget; a numba kernel takes the argmin
and adds the row to its cluster's float64 sum in the same pass.  Centroids
start at distinct random rows; a cluster left empty restarts at a random row
(the paper's code sets it to zero, which wastes a feature).
"""

from __future__ import annotations

import numpy as np

from .._progress import track
from . import _kmeans_kernels as kern


def kmeans(X: np.ndarray, k: int, max_iter: int, rng: np.random.Generator,
           block_rows: int) -> tuple[np.ndarray, int]:
    """Cluster the rows of ``X``.

    Parameters
    ----------
    X : ndarray of shape (m, d), float32, C-contiguous
        m >= k.
    k : int
    max_iter : int
        Lloyd iterations at most; stops earlier when no row changes cluster.
    rng : numpy Generator
    block_rows : int
        Rows per matrix multiply (the score block is block_rows x k float32).

    Returns
    -------
    centroids : ndarray of shape (k, d), float32
    n_iter : int
        Iterations run.
    """
    m, d = X.shape
    centroids = X[np.sort(rng.choice(m, size=k, replace=False))].copy()
    labels = np.full(m, -1, dtype=np.int64)
    S = np.empty((min(block_rows, m), k), dtype=np.float32)
    n_iter = 0
    for n_iter in track(range(1, max_iter + 1), "k-means", total=max_iter):
        cc = np.einsum("ij,ij->i", centroids, centroids, dtype=np.float32)
        sums = np.zeros((k, d))
        counts = np.zeros(k, dtype=np.int64)
        changed = 0
        for s in range(0, m, block_rows):
            Xb = X[s:s + block_rows]
            Sb = S[:Xb.shape[0]]
            np.matmul(Xb, centroids.T, out=Sb)
            changed += kern.assign_accumulate(Sb, cc, Xb, labels[s:s + block_rows], sums, counts)
        empty = np.flatnonzero(counts == 0)
        full = counts > 0
        centroids[full] = (sums[full] / counts[full, None]).astype(np.float32)
        if empty.size:
            centroids[empty] = X[rng.choice(m, size=empty.size, replace=False)]
        if changed == 0:
            break
    return np.ascontiguousarray(centroids), n_iter
