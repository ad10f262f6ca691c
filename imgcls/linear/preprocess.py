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


def fit_preprocessing(X, scale="auto", center=True, standardize=False):
    """Learn the preprocessing statistics from the training data ``X`` (n, d).

    Returns
    -------
    input_scale : float
    mean : ndarray of shape (n_features,), float64
    scale : ndarray of shape (n_features,), float64
    """
    n, d = X.shape
    s = input_scale_for(X, scale)
    mean = np.zeros(d)
    std = np.ones(d)
    if center or standardize:
        total = np.zeros(d)
        for i in range(0, n, _BLOCK_ROWS):
            total += X[i:i + _BLOCK_ROWS].sum(axis=0, dtype=np.float64)
        mu = total / (n * s)
        if center:
            mean = mu
        if standardize:
            sq = np.zeros(d)
            for i in range(0, n, _BLOCK_ROWS):
                block = X[i:i + _BLOCK_ROWS].astype(np.float64) / s - mu
                sq += np.einsum("ij,ij->j", block, block)
            sd = np.sqrt(sq / n)
            # a constant feature carries no information; dividing by 1 keeps it at 0
            # (after centring) instead of producing 0/0
            std = np.where(sd > 1e-12 * max(1.0, float(np.abs(mu).max(initial=0.0))), sd, 1.0)
    return s, mean, std


def transform(X, input_scale, mean, scale, dtype=np.float32):
    """Apply the fitted preprocessing; returns a new C-contiguous ``dtype`` array (n, d)."""
    n, d = X.shape
    out = np.empty((n, d), dtype=dtype)
    # (x / s - mean) / scale == (x - s * mean) * (1 / (s * scale)): one subtraction and
    # one multiplication per element, done in blocks to avoid float64 temporaries
    shift = (input_scale * mean).astype(dtype)
    mult = (1.0 / (input_scale * scale)).astype(dtype)
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
