"""What the exact search needs to know about a training set, computed once.

Every L2/cosine search needs, besides the training rows themselves, their
float64 squared norms (the certificate and the exact cosine formula), the
columns that hold a non-zero value in some row (the others are left out of the
matrix multiply) and, for cosine, the inverse norms; and it multiplies float32
copies of the rows (cosine: normalised ones).  :class:`PreparedTrainingSet`
computes these once per training set, so that ``KNearestNeighbor.fit``
prepares them and every later ``kneighbors``/``predict`` call pays only for
the scan.  It is a cache, not a learned attribute: model files do not store
it, and the estimator rebuilds it lazily when ``X_fit_`` is another array (a
model loaded from a file, or ``X_fit_`` set by hand).

Memory: the norms are O(n_train) float64; the float32 copy of the rows is kept
only when it fits in ``cache_bytes`` (the estimator's ``cache_memory``), and only
for one metric at a time.  Otherwise each search converts one block at a time
(and a float32 training set searched by L2 with no all-zero column needs no
copy at all: its blocks are views).  The training rows are never copied whole:
a memory-mapped array is read block by block, once per pass.
"""

from __future__ import annotations

import numpy as np

from ..config import budget_bytes  # noqa: F401  (re-exported: the modules of this package import it from here)

def _row_blocks(n, rows):
    return [(s, min(n, s + rows)) for s in range(0, n, max(1, rows))]


def row_sq_norms(X, budget):
    """float64 |x|^2 of every row of ``X`` (exact for ``uint8``), converted block by block.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    budget : float
        Bytes; a block of float64 rows takes at most a quarter of it.

    Returns
    -------
    ndarray of shape (n,), float64
    """
    out = np.empty(X.shape[0])
    rows = max(1, int(budget // 4 // (X.shape[1] * 8 + 1)))
    for s, e in _row_blocks(X.shape[0], rows):
        blk = X[s:e].astype(np.float64)
        out[s:e] = np.einsum("ij,ij->i", blk, blk)
    return out


def inverse(norms):
    """1 / norms, with 0 for a zero norm (a zero vector's cosine similarity is 0)."""
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def to_f32(X, inv=None):
    """``X`` as float32 (no copy when it already is); rows scaled by ``inv`` when given.

    The scaling is done in float64 and rounded once to float32, a quarter of
    the rows at a time, so the float64 temporary is half the float32 result.
    """
    if inv is None:
        return np.ascontiguousarray(X, dtype=np.float32)
    out = np.empty(X.shape, dtype=np.float32)
    step = max(1, -(-X.shape[0] // 4))
    for s in range(0, X.shape[0], step):
        part = X[s:s + step].astype(np.float64)
        part *= inv[s:s + step, None]
        out[s:s + step] = part
    return out


def columns_f32(X, cols, inv=None):
    """float32 copy of ``X[:, cols]`` (``cols`` None: all columns), rows scaled by ``inv``."""
    if cols is not None:
        X = np.take(X, cols, axis=1)
    return to_f32(X, inv)


class PreparedTrainingSet:
    """A training set with its per-set search quantities, computed lazily and kept.

    Parameters
    ----------
    X : ndarray of shape (n_train, d)
        ``uint8``, float16, float32 or float64 rows (a ``numpy.memmap`` is kept
        as it is and read in blocks).  Must not be modified afterwards: the
        prepared quantities would no longer match it.
    cache_bytes : int, default=0
        Largest float32 copy of the training rows (for the L2/cosine matrix
        multiply) to keep; 0 keeps none.

    Attributes
    ----------
    source : object
        The array given, as given (the estimator compares it with ``X_fit_`` by
        identity to tell whether this preparation is still its own).
    X : ndarray of shape (n_train, d)
        The same rows, C-contiguous (a view of ``source``, not a copy, when
        ``source`` is C-contiguous).
    """

    def __init__(self, X, cache_bytes=0):
        self.source = X
        X = np.ascontiguousarray(X)
        if X.ndim != 2:
            raise ValueError(f"the training set must be 2-D, got shape {X.shape}")
        self.X = X
        self.cache_bytes = max(0, int(cache_bytes))
        self._sq = None
        self._norms = None
        self._inv = None
        self._cols = None
        self._cols_done = False
        # (metric, float32 copy) or None: one attribute, so that a search
        # running in another thread never sees a copy with another's metric
        self._kept = None

    @property
    def n(self):
        """Training rows."""
        return self.X.shape[0]

    # ------------------------------------------------------ per-set values ---
    def sq_norms(self, budget):
        """float64 |t|^2 of every training row (the reference's arithmetic)."""
        if self._sq is None:
            self._sq = row_sq_norms(self.X, budget)
        return self._sq

    def norms(self, budget):
        """float64 |t| of every training row."""
        if self._norms is None:
            self._norms = np.sqrt(self.sq_norms(budget))
        return self._norms

    def inverse_norms(self, budget):
        """1 / |t| (0 for a zero row), for cosine."""
        if self._inv is None:
            self._inv = inverse(self.norms(budget))
        return self._inv

    def columns(self, budget):
        """Columns of the matrix multiply: None for all, else the indices kept.

        Columns that are zero in every training row add nothing to q.t, and
        the rest of their L2 term, sum_c q_c^2, is the same for every training
        row of a query: leaving them out cannot change any ranking (MNIST: 67
        of 784 columns, 8.5% of the matrix-multiply work).  An all-zero
        training set keeps one (zero) column.
        """
        if not self._cols_done:
            X = self.X
            rows = max(1, int(budget // 4 // max(1, X.shape[1])))
            used = np.zeros(X.shape[1], dtype=bool)
            for s, e in _row_blocks(X.shape[0], rows):
                used |= (X[s:e] != 0).any(axis=0)
            cols = np.flatnonzero(used)
            if cols.size == X.shape[1]:
                cols = None
            elif cols.size == 0:
                cols = np.zeros(1, dtype=np.intp)
            self._cols, self._cols_done = cols, True
        return self._cols

    # ------------------------------------------------------- float32 rows ---
    def gemm_rows(self, metric, start, stop, budget):
        """float32 rows ``start:stop`` for the matrix multiply of ``metric``.

        Only the columns of :meth:`columns`; for cosine, normalised to unit
        length (in float64, rounded once).  A slice of the kept copy when there
        is one, else converted now (a view when nothing needs converting).
        """
        kept = self._kept
        if kept is not None and kept[0] == metric:
            return kept[1][start:stop]
        cols = self.columns(budget)
        inv = self.inverse_norms(budget)[start:stop] if metric == "cosine" else None
        return columns_f32(self.X[start:stop], cols, inv)

    def gemm_copy_bytes(self, metric, budget):
        """Bytes a kept float32 copy for ``metric`` takes (0: the rows are used as they are)."""
        cols = self.columns(budget)
        if metric == "l2" and cols is None and self.X.dtype == np.float32:
            return 0
        width = self.X.shape[1] if cols is None else cols.size
        return self.n * width * 4

    def prepare(self, metric, budget):
        """Compute now what a search with ``metric`` needs (the estimator's ``fit`` calls it).

        The float32 copy is kept when it fits in ``cache_bytes``; a copy for
        another metric is dropped first.
        """
        if metric not in ("l2", "cosine"):
            return self
        self.sq_norms(budget)
        if metric == "cosine":
            self.inverse_norms(budget)
        self.columns(budget)
        kept = self._kept
        if kept is not None and kept[0] == metric:
            return self
        self._kept = None
        size = self.gemm_copy_bytes(metric, budget)
        if 0 < size <= self.cache_bytes:
            width = size // (4 * max(1, self.n))
            copy = np.empty((self.n, width), dtype=np.float32)
            rows = max(1, int(budget // 4 // (self.X.shape[1] * 8 + 1)))
            for s, e in _row_blocks(self.n, rows):
                copy[s:e] = self.gemm_rows(metric, s, e, budget)
            self._kept = (metric, copy)
        return self

    def set_cache_bytes(self, cache_bytes):
        """Change the kept copy's limit; a copy over the new limit is dropped."""
        self.cache_bytes = max(0, int(cache_bytes))
        kept = self._kept
        if kept is not None and kept[1].nbytes > self.cache_bytes:
            self._kept = None

    @property
    def cached_bytes(self):
        """Bytes held by the kept float32 copy (0 when there is none)."""
        kept = self._kept
        return 0 if kept is None else kept[1].nbytes

    # ------------------------------------------------ rows for the kernels ---
    def kernel_blocks(self, budget):
        """(start, stop) row ranges to hand to the numba kernels, in increasing order.

        The whole set at once, except float16 rows, which the kernels read as
        float32 blocks (:meth:`kernel_rows`) of at most a quarter of ``budget`` bytes.
        """
        if self.X.dtype != np.float16:
            return [(0, self.n)]
        rows = max(1, int(budget // 4 // (4 * max(1, self.X.shape[1]))))
        return _row_blocks(self.n, rows)

    def kernel_rows(self, start, stop):
        """Rows ``start:stop`` as the numba kernels read them (float16 -> float32, exact)."""
        rows = self.X[start:stop]
        return rows.astype(np.float32) if rows.dtype == np.float16 else rows

    def gather_kernel_rows(self, index):
        """Rows ``X[index]`` (any shape of non-negative indices), as :meth:`kernel_rows`."""
        rows = self.X[index.reshape(-1)]
        return rows.astype(np.float32) if rows.dtype == np.float16 else rows
