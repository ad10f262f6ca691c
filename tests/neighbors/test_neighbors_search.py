"""The fast search equals the lecture's brute force, for every metric, dtype and block size."""

import numpy as np
import pytest

from imgcls import config_context
from imgcls.neighbors.reference import (NearestNeighborReference, reference_distances,
                                        reference_kneighbors)
from imgcls.neighbors.search import knn_search

from .conftest import tie_data

DTYPES = [np.uint8, np.float32, np.float64]
METRICS = ["l1", "l2", "cosine"]


def assert_same(got, ref):
    (d, i), (rd, ri) = got, ref
    assert d.dtype == np.float64 and i.dtype == np.int64
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(d, rd, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("block", [None, 1, 3, 10_000])
def test_ties_and_duplicates_match_reference(dtype, metric, block):
    Q, X = tie_data(dtype)
    if block is not None and block < 5:
        Q = Q[:6]  # every one-row block is a parallel-region launch: keep it short
    for k in (1, 6, len(X)):
        assert_same(knn_search(Q, X, k, metric, _block_rows=block),
                    reference_kneighbors(Q, X, k, metric))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_continuous_values_match_reference(dtype, metric, rng):
    if dtype == np.uint8:
        X = rng.integers(0, 256, (300, 40)).astype(np.uint8)
        Q = rng.integers(0, 256, (37, 40)).astype(np.uint8)
    else:
        X = rng.normal(size=(300, 40)).astype(dtype)
        Q = rng.normal(size=(37, 40)).astype(dtype)
    assert_same(knn_search(Q, X, 9, metric), reference_kneighbors(Q, X, 9, metric))
    # a tiny working-memory budget forces one-row blocks of the faiss path
    with config_context(working_memory=1e-6):
        assert_same(knn_search(Q, X, 9, metric), reference_kneighbors(Q, X, 9, metric))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_near_ties_that_float32_cannot_see(metric):
    # Rows differing by one unit on top of a huge common offset: float32's
    # |x|^2 + |y|^2 - 2 x.y cannot tell them apart, so the certificate must
    # send these queries to the exact fallback, and the answer stays exact.
    rng = np.random.default_rng(3)
    base = np.full(64, 1e4)
    X = base + rng.integers(0, 3, (200, 64)).astype(np.float64)
    Q = base + rng.integers(0, 3, (20, 64)).astype(np.float64)
    assert_same(knn_search(Q, X, 5, metric), reference_kneighbors(Q, X, 5, metric))


def test_uint8_l2_is_exact_in_integers(rng):
    X = rng.integers(0, 256, (500, 784)).astype(np.uint8)
    Q = X[:30].copy()
    Q[:, 0] ^= 1  # one pixel off: the nearest row is at distance exactly 1
    d, i = knn_search(Q, X, 3, "l2")
    np.testing.assert_array_equal(i[:, 0], np.arange(30))
    np.testing.assert_array_equal(d[:, 0], 1.0)
    assert_same((d, i), reference_kneighbors(Q, X, 3, "l2"))


@pytest.mark.parametrize("metric", METRICS)
def test_exclude_self_is_leave_one_out(metric):
    _, X = tie_data(np.uint8)
    d, i = knn_search(X, X, 4, metric, exclude_self=True)
    assert d.shape == i.shape == (len(X), 4)
    rd, ri = reference_kneighbors(X, X, 5, metric)
    for r in range(len(X)):
        cols = [c for c in range(5) if ri[r, c] != r][:4]
        np.testing.assert_array_equal(i[r], ri[r, cols])
        np.testing.assert_allclose(d[r], rd[r, cols], atol=1e-12)
    assert not (i == np.arange(len(X))[:, None]).any()


def test_float_queries_on_uint8_training_set(rng):
    _, X = tie_data(np.uint8)
    Q = rng.normal(size=(7, X.shape[1])) + 1.5
    assert_same(knn_search(Q, X, 3, "l1"), reference_kneighbors(Q, X, 3, "l1"))
    Qi = X[:5].astype(np.float64)  # pixel values as floats: searched as uint8
    assert_same(knn_search(Qi, X, 3, "l1"), reference_kneighbors(Qi, X, 3, "l1"))


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_thread_count_does_not_change_answers(n_jobs, rng):
    X = rng.integers(0, 256, (200, 50)).astype(np.uint8)
    Q = rng.integers(0, 256, (30, 50)).astype(np.uint8)
    for metric in METRICS:
        assert_same(knn_search(Q, X, 4, metric, n_jobs=n_jobs), reference_kneighbors(Q, X, 4, metric))


def test_empty_query_block():
    _, X = tie_data(np.uint8)
    d, i = knn_search(X[:0], X, 2, "l1")
    assert d.shape == i.shape == (0, 2)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(k=0), "k must be an integer in 1..60"),
    (dict(k=61), "k must be an integer in 1..60"),
    (dict(k=60, exclude_self=True), r"1\.\.59"),
    (dict(k=2, metric="l3"), "metric must be one of"),
    (dict(k=2, working_memory=0), "working_memory must be a positive"),
])
def test_search_bad_arguments(kwargs, msg):
    _, X = tie_data(np.uint8)
    with pytest.raises(ValueError, match=msg):
        knn_search(X, X, **kwargs)


def test_search_feature_mismatch():
    Q, X = tie_data(np.uint8)
    with pytest.raises(ValueError, match="same number of features"):
        knn_search(Q[:, :3], X, 1)


def test_lecture_reference_classifier_agrees_with_reference_search():
    Q, X = tie_data(np.uint8)
    y = np.arange(len(X)) % 3
    nn = NearestNeighborReference()
    nn.train(X, y)
    _, ri = reference_kneighbors(Q, X, 1, "l1")
    np.testing.assert_array_equal(nn.predict(Q), y[ri[:, 0]])


def test_reference_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        reference_distances(np.zeros(3), np.zeros((2, 3)), "chebyshev")
