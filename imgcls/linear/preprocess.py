"""Preprocessing fitted on the training data only: pixel scaling, mean image, standardisation.

The transform of a raw feature vector ``x`` is::

    x' = (x / input_scale - mean) / scale

- ``input_scale`` (float): 255 for ``uint8`` input when ``scale="auto"`` (raw
  pixels to [0, 1]), 1 for any other dtype (features are assumed to be on a
  sensible scale already, e.g. embeddings); a number given by the user is used
  as it is.
- ``mean`` (n_features,): the mean training image after scaling (the lecture's
  mean-image subtraction); zeros with ``center=False``.
- ``scale`` (n_features,): per-feature standard deviation of the scaled, centred
  training data with ``standardize=True`` (features with zero spread get 1, so
  constant pixels stay 0), else ones.

The statistics are computed in float64, in row blocks so that no float64 copy of
the whole data set is made; the transformed data is float32 (or float64 on
request) and C-contiguous, ready for the training kernel.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_BLOCK_ROWS = 4096
# below this many elements a thread pool costs more than it saves
_THREADED_MIN_SIZE = 4_000_000


def input_scale_for(X, scale):
    """The divisor applied to raw features for the ``scale`` parameter."""
    if isinstance(scale, str):
        return 255.0 if X.dtype == np.uint8 else 1.0
    return float(scale)


def fit_preprocessing(X, scale="auto", center=True, standardize=False, rows=None):
    """Learn the preprocessing statistics from the training data ``X`` (n, d).

    ``rows`` (sorted int indices), if given, restricts the statistics to
    ``X[rows]`` without copying it (e.g. the training part of a hold-out split).

    Returns
    -------
    input_scale : float
    mean : ndarray of shape (n_features,), float64
    scale : ndarray of shape (n_features,), float64
    """
    n, d = X.shape
    if rows is not None:
        n = len(rows)

    def block_at(i):
        return X[i:i + _BLOCK_ROWS] if rows is None else X[rows[i:i + _BLOCK_ROWS]]

    s = input_scale_for(X, scale)
    mean = np.zeros(d)
    std = np.ones(d)
    if center or standardize:
        total = np.zeros(d)
        for i in range(0, n, _BLOCK_ROWS):
            total += block_at(i).sum(axis=0, dtype=np.float64)
        mu = total / (n * s)
        if center:
            mean = mu
        if standardize:
            sq = np.zeros(d)
            for i in range(0, n, _BLOCK_ROWS):
                block = block_at(i).astype(np.float64) / s - mu
                sq += np.einsum("ij,ij->j", block, block)
            sd = np.sqrt(sq / n)
            # a constant feature carries no information; dividing by 1 keeps it at 0
            # (after centring) instead of producing 0/0
            std = np.where(sd > 1e-12 * max(1.0, float(np.abs(mu).max(initial=0.0))), sd, 1.0)
    return s, mean, std


def coefficients(input_scale, mean, scale, dtype=np.float32):
    """``(shift, mult)`` with ``x' = (x - shift) * mult``, in ``dtype``.

    ``(x / s - mean) / scale == (x - s * mean) * (1 / (s * scale))``: one
    subtraction and one multiplication per element.  Every transform (the whole
    matrix, or one gathered minibatch) goes through these same two operations,
    so both give bit-for-bit the same values.
    """
    return (input_scale * mean).astype(dtype), (1.0 / (input_scale * scale)).astype(dtype)


def transform_rows(X, rows, out, coef):
    """Write the preprocessed ``X[rows]`` into ``out`` (m, d), without a copy of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rows : int ndarray of shape (m,)
    out : ndarray of shape (>= m, n_features)
        Float buffer; its first ``m`` rows are overwritten.
    coef : tuple
        ``(shift, mult)`` from :func:`coefficients` in ``out``'s dtype.

    Returns
    -------
    ndarray of shape (m, n_features)
        The filled view of ``out``.
    """
    block = out[:rows.shape[0]]
    if X.dtype == block.dtype:
        np.take(X, rows, axis=0, out=block)
    else:
        block[...] = X[rows]  # a gathered copy of m rows in X's own (smaller) dtype
    block -= coef[0]
    block *= coef[1]
    return block


def transform(X, input_scale, mean, scale, dtype=np.float32):
    """Apply the fitted preprocessing; returns a new C-contiguous ``dtype`` array (n, d)."""
    n, d = X.shape
    out = np.empty((n, d), dtype=dtype)
    # done in blocks to avoid float64 temporaries
    shift, mult = coefficients(input_scale, mean, scale, dtype)
    # blocks of ~1 MB stay in cache for the three passes over them
    rows = max(1, 2**20 // (4 * max(1, d)))

    def work(i):
        block = out[i:i + rows]
        block[...] = X[i:i + rows]
        block -= shift
        block *= mult

    starts = range(0, n, rows)
    if n * d < _THREADED_MIN_SIZE or len(starts) < 2:
        for i in starts:
            work(i)
    else:
        # NumPy releases the GIL in these loops, so threads use every core; the
        # result is elementwise, hence the same whatever the number of threads
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(work, starts))
    return out
