import numpy as np
import pytest


def tie_data(dtype, seed=0, n_train=60, n_query=25, d=7):
    """Small-integer data: many exact ties, duplicate training rows, a query equal to a row."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n_train, d)).astype(dtype)
    X[10] = X[3]
    X[20] = X[3]
    X[41] = 0  # a zero row (cosine similarity 0)
    Q = rng.integers(0, 4, (n_query, d)).astype(dtype)
    Q[0] = X[3]
    Q[1] = 0
    return Q, X


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
