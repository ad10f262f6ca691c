"""Numba kernel of the sparse vote: the best classes of each row from its k neighbours.

Compiled lazily on first use and cached on disk (``cache=True``).  Imported only
by :func:`imgcls.neighbors.vote.vote_topk`, so importing the package does not
load numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def topk_votes(neigh_y, w, n_classes, out_cls, out_score):
    """Fill ``out_cls``/``out_score`` (n, n_out) with each row's best classes and their votes.

    Parameters
    ----------
    neigh_y : int64 array of shape (n, k)
        Class indices of the neighbours, nearest first.
    w : float64 array of shape (n, k)
        Their votes.
    n_classes : int
        ``n_out <= n_classes``.
    out_cls : int64 array of shape (n, n_out)
    out_score : float64 array of shape (n, n_out)

    Notes
    -----
    Each class's score starts at 0.0 and gets its neighbours' votes added in
    column order, the order ``np.bincount`` adds them, so the scores are
    bit-identical to :func:`~imgcls.neighbors.vote.vote_scores`.  Classes are
    met in the order of their nearest neighbour, so a stable insertion by
    descending score ranks ties by nearest neighbour; classes with no
    neighbour follow, by class index.  Memory: one (n_classes,) slot table
    (reset after each row, touching only the row's classes) and (k,) buffers.
    """
    n, k = neigh_y.shape
    n_out = out_cls.shape[1]
    slot = np.full(n_classes, -1, dtype=np.int64)
    cls = np.empty(k, dtype=np.int64)
    score = np.empty(k, dtype=np.float64)
    for i in range(n):
        m = 0
        for j in range(k):
            c = neigh_y[i, j]
            s = slot[c]
            if s < 0:
                s = m
                slot[c] = m
                cls[m] = c
                score[m] = 0.0
                m += 1
            score[s] += w[i, j]
        top = min(n_out, m)
        filled = 0
        for t in range(m):
            v = score[t]
            if filled == top:
                if not v > out_score[i, top - 1]:
                    continue  # a tie with the last kept class loses: its neighbour is farther
                p = top - 1  # the last one drops out
            else:
                p = filled
                filled += 1
            while p > 0 and out_score[i, p - 1] < v:
                out_score[i, p] = out_score[i, p - 1]
                out_cls[i, p] = out_cls[i, p - 1]
                p -= 1
            out_score[i, p] = v
            out_cls[i, p] = cls[t]
        c = 0
        while filled < n_out:
            if slot[c] < 0:
                out_cls[i, filled] = c
                out_score[i, filled] = 0.0
                filled += 1
            c += 1
        for t in range(m):
            slot[cls[t]] = -1
