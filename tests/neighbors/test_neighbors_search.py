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
    # a tiny working-memory budget forces one-row blocks of the matrix-multiply path
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
    (dict(k=2, working_memory=0), r"working_memory must be a number of MiB in \(0, "),
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("block", [None, 1, 7, 10_000])
def test_all_zero_training_columns_are_dropped_exactly(dtype, metric, block, rng):
    # Columns that are zero in every training row are left out of the matrix
    # product; queries that are non-zero there (large values, so that leaving
    # their |q|^2 part out of the score matters if it were done wrong) must
    # still get the reference's neighbours and distances.
    X = rng.integers(0, 6, (80, 12)).astype(dtype)
    X[:, [0, 5, 6, 11]] = 0
    X[7] = X[2]  # a duplicate: equal distances, smaller index first
    X[30] = 0  # a zero row (cosine similarity 0)
    Q = rng.integers(0, 6, (9 if block == 1 else 25, 12)).astype(dtype)
    Q[:, 5] = 200
    Q[1] = X[2]
    Q[2, :] = 0
    Q[2, 0] = 3  # non-zero only in a dropped column
    for k in (1, 4, 80):
        assert_same(knn_search(Q, X, k, metric, _block_rows=block),
                    reference_kneighbors(Q, X, k, metric))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_all_zero_training_set(metric):
    X = np.zeros((6, 5), dtype=np.uint8)
    Q = np.arange(10, dtype=np.uint8).reshape(2, 5)
    assert_same(knn_search(Q, X, 3, metric), reference_kneighbors(Q, X, 3, metric))


def _brute_merge(S, a, c, j0, q0, cand_d, cand_i):
    # the plain version: all old candidates and new scores, sorted by (score, index)
    d, i = cand_d.copy(), cand_i.copy()
    for r in range(S.shape[0]):
        q = q0 + r
        scores = np.concatenate([d[q], a + c * S[r]]).astype(np.float32)
        index = np.concatenate([i[q], j0 + np.arange(S.shape[1])])
        keep = index >= 0
        scores, index = scores[keep], index[keep]
        order = np.lexsort((index, scores))[: d.shape[1]]
        d[q] = np.inf
        i[q] = -1
        d[q, : order.size], i[q, : order.size] = scores[order], index[order]
    return d, i


@pytest.mark.parametrize("kc", [1, 3, 12])
def test_merge_kernel_equals_brute_merge(kc, rng):
    from imgcls.neighbors._kernels import merge_scores

    n, nb = 11, 9
    cand_d = np.full((n, kc), np.inf, dtype=np.float32)
    cand_i = np.full((n, kc), -1, dtype=np.int64)
    ref_d, ref_i = cand_d.copy(), cand_i.copy()
    # three training blocks in increasing index order, into queries 2..8; small
    # integers, so many scores are exactly equal (ties go to the smaller index)
    for j0 in (0, nb, 2 * nb):
        S = rng.integers(-3, 4, (7, nb)).astype(np.float32)
        a = rng.integers(0, 3, nb).astype(np.float32)
        c = np.float32(-2.0 if j0 < 2 * nb else -1.0)  # L2's and cosine's factor
        merge_scores(S, a, c, j0, 2, cand_d, cand_i)
        ref_d, ref_i = _brute_merge(S, a, c, j0, 2, ref_d, ref_i)
    np.testing.assert_array_equal(cand_i, ref_i)
    np.testing.assert_array_equal(cand_d, ref_d)
    # untouched queries keep their initial state
    assert np.isinf(cand_d[[0, 1, 9, 10]]).all() and (cand_i[[0, 1, 9, 10]] == -1).all()
    assert (np.diff(cand_d[2:9], axis=1) >= 0).all()


def test_blas_threads_follow_n_jobs():
    from threadpoolctl import threadpool_info

    from imgcls.neighbors.search import threads

    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    with threads(1):
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
