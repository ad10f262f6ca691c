"""ZCA whitening of contrast-normalised patches (Coates, Lee and Ng, 2011).

With the patches' mean ``M`` and covariance ``C = V diag(D) V^T``, a patch
``x`` becomes ``(x - M) P`` with ``P = V diag(1 / sqrt(D + eps)) V^T``: the
whitened patches have covariance ``V diag(D / (D + eps)) V^T``, the identity
in every direction whose variance is well above ``eps``.  The paper's code
uses eps = 0.1 on patches normalised with ``sqrt(var + 10)``.
"""

from __future__ import annotations

import numpy as np

#: Rows per block when accumulating the covariance in float64.
_COV_BLOCK = 65536


def zca_fit(patches: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ZCA matrix of the rows of ``patches``.

    Parameters
    ----------
    patches : ndarray of shape (m, d), float32
        m >= 2.
    eps : float > 0
        Added to every eigenvalue before the inverse square root.

    Returns
    -------
    mean : ndarray of shape (d,), float64
    P : ndarray of shape (d, d), float64
        Symmetric; the whitened patches are ``(patches - mean) @ P``.
    """
    m, d = patches.shape
    total = np.zeros(d)
    gram = np.zeros((d, d))
    for s in range(0, m, _COV_BLOCK):
        block = patches[s:s + _COV_BLOCK].astype(np.float64)
        total += block.sum(axis=0)
        gram += block.T @ block
    mean = total / m
    cov = (gram - m * np.outer(mean, mean)) / (m - 1)
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
    evals = np.maximum(evals, 0.0)  # rounding can leave tiny negative eigenvalues
    P = (evecs * (1.0 / np.sqrt(evals + eps))) @ evecs.T
    return mean, P
