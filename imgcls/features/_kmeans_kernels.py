"""Numba kernels of :mod:`imgcls.features.kmeans`: patches in, pooled activations out.

All are serial and release the GIL; the caller runs one per worker thread,
each next to its own one-thread BLAS matrix multiply (as the neighbour search
does), so that a core never waits for another's part of a parallel loop.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _normalise_row(row, eps):
    """Subtract the patch's mean, divide by sqrt(var + eps) (var with n - 1, as MATLAB's)."""
    d = row.size
    s = 0.0
    for t in range(d):
        s += row[t]
    mean = s / d
    v = 0.0
    for t in range(d):
        row[t] -= mean
        v += row[t] * row[t]
    inv = 1.0 / math.sqrt(v / (d - 1) + eps)
    for t in range(d):
        row[t] *= inv


@njit(cache=True, nogil=True)
def all_patches(X, p, eps, out):
    """Every p x p patch of every image at stride 1, contrast-normalised.

    ``X`` (b, H, W, C) uint8; ``out`` (b * (H-p+1) * (W-p+1), p*p*C) float32, rows
    in (image, patch row, patch column) order, each patch flattened (dy, dx, c).
    """
    b, h, w, c = X.shape
    ph = h - p + 1
    pw = w - p + 1
    d = p * p * c
    row = np.empty(d)
    r = 0
    for i in range(b):
        for y in range(ph):
            for x in range(pw):
                t = 0
                for dy in range(p):
                    for dx in range(p):
                        for ch in range(c):
                            row[t] = X[i, y + dy, x + dx, ch]
                            t += 1
                _normalise_row(row, eps)
                for t in range(d):
                    out[r, t] = row[t]
                r += 1


@njit(cache=True, nogil=True)
def some_patches(X, img, ys, xs, p, eps, out):
    """The patches at (img[j], ys[j], xs[j]), contrast-normalised, as ``all_patches`` lays them out."""
    c = X.shape[3]
    d = p * p * c
    row = np.empty(d)
    for j in range(img.size):
        i = img[j]
        t = 0
        for dy in range(p):
            for dx in range(p):
                for ch in range(c):
                    row[t] = X[i, ys[j] + dy, xs[j] + dx, ch]
                    t += 1
        _normalise_row(row, eps)
        for t in range(d):
            out[j, t] = row[t]


@njit(cache=True, nogil=True)
def subtract_row(A, v):
    """A -= v for each row, in place."""
    for i in range(A.shape[0]):
        for t in range(A.shape[1]):
            A[i, t] -= v[t]


@njit(cache=True, nogil=True)
def assign_accumulate(S, cc, Xw, labels, sums, counts):
    """Nearest centroid of each row (argmin of |c|^2 - 2 x.c), and the per-cluster sums.

    ``S`` (m, K) float32 holds x.c; ``sums`` (K, d) float64 and ``counts`` (K,)
    are added to; ``labels`` (m,) receives the indices.  Returns the number of
    rows whose label changed.
    """
    m, k = S.shape
    changed = 0
    for i in range(m):
        best = np.inf
        arg = 0
        for j in range(k):
            v = cc[j] - 2.0 * S[i, j]
            if v < best:
                best = v
                arg = j
        if labels[i] != arg:
            changed += 1
            labels[i] = arg
        counts[arg] += 1
        for t in range(Xw.shape[1]):
            sums[arg, t] += Xw[i, t]
    return changed


@njit(cache=True, nogil=True, fastmath=True)
def triangle_pool(S, Xw, cc, n_images, ph, pw, rbounds, cbounds, out):
    """Triangle activations summed over the pooling cells.

    For patch x with distances z_k = |x - c_k| (from x.c in ``S``, |x|^2 from
    ``Xw``, |c|^2 in ``cc``): f_k = max(0, mean(z) - z_k), added to
    ``out[image, cell, k]`` where the cell is the patch position's place in
    the pooling grid (``rbounds``/``cbounds``: first patch row/column of each
    grid row/column, then the end).  Each score row is read once; the
    distances live in one reused buffer of K floats.  Branch-free float32
    loops, so that they vectorise.
    """
    k = S.shape[1]
    g_c = cbounds.size - 1
    z = np.empty(k, dtype=np.float32)
    zero = np.float32(0.0)
    two = np.float32(2.0)
    r = 0
    for i in range(n_images):
        for y in range(ph):
            gy = 0
            while y >= rbounds[gy + 1]:
                gy += 1
            for x in range(pw):
                gx = 0
                while x >= cbounds[gx + 1]:
                    gx += 1
                xx = zero
                for t in range(Xw.shape[1]):
                    xx += Xw[r, t] * Xw[r, t]
                Sr = S[r]
                s = zero
                for j in range(k):
                    zj = np.sqrt(max(xx + cc[j] - two * Sr[j], zero))
                    z[j] = zj
                    s += zj
                mu = s / np.float32(k)
                cell = out[i, gy * g_c + gx]
                for j in range(k):
                    cell[j] += max(mu - z[j], zero)
                r += 1
