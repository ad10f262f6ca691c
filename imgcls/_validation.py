"""Input checks shared by the estimators."""

from __future__ import annotations

import numpy as np


def flatten_images(X):
    """Flatten images of shape (n, H, W, C) or (n, H, W) to (n, H*W*C), without a copy.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)

    Returns
    -------
    X2 : ndarray or the input unchanged
        ``X`` reshaped to (n_samples, n_features) when it had more than two
        dimensions (a view where the memory layout allows); other inputs are
        returned as they are, for scikit-learn's validation to judge.
    image_shape : tuple of int or None
        The shape of one sample, e.g. (28, 28, 1), when ``X`` had more than two
        dimensions; otherwise None.
    """
    if isinstance(X, np.ndarray) and X.ndim > 2:
        return X.reshape(X.shape[0], -1), tuple(int(s) for s in X.shape[1:])
    return X, None
