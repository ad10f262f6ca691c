"""Sparse, block-wise votes: equal to the dense oracle (vote_scores / vote_rank), bounded memory."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcls.neighbors import KNearestNeighbor, knn
from imgcls.neighbors.vote import vote_rank, vote_scores, vote_topk

from peak_memory import traced_peak

IMAGENET21K_CLASSES = 21_843


def assert_matches_oracle(neigh_y, dist, n_classes, n, **kw):
    dense = vote_scores(neigh_y, dist, n_classes, **kw)
    ranked_dense = vote_rank(dense, neigh_y)
    ranked, scores = vote_topk(neigh_y, dist, n_classes, n, **kw)
    assert ranked.shape == scores.shape == (neigh_y.shape[0], min(n, n_classes))
    np.testing.assert_array_equal(ranked, ranked_dense[:, :n])
    # bit-identical scores, not merely close ones
    expected = np.take_along_axis(dense, ranked, axis=1)
    assert ranked.dtype == np.int64 and scores.dtype == np.float64
    assert expected.tobytes() == scores.tobytes()


@st.composite
def neighbours(draw):
    """Few classes and few distinct distances (0 included): ties in votes and in distances."""
    n_classes = draw(st.integers(1, 5))
    rows = draw(st.integers(1, 6))
    k = draw(st.integers(1, 8))
    neigh_y = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=rows * k,
                                     max_size=rows * k))).reshape(rows, k)
    levels = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0]
    dist = np.array(draw(st.lists(st.sampled_from(levels), min_size=rows * k,
                                  max_size=rows * k))).reshape(rows, k)
    return neigh_y, np.sort(dist, axis=1), n_classes


@settings(max_examples=200, deadline=None)
@given(neighbours(), st.sampled_from(["uniform", "distance", "softmax"]),
       st.sampled_from(["l1", "l2", "cosine"]), st.sampled_from([0.07, 0.5, 1.0, 3.0]),
       st.integers(1, 7))
def test_sparse_votes_equal_dense_oracle(data, weights, metric, temperature, n):
    neigh_y, dist, n_classes = data
    assert_matches_oracle(neigh_y, dist, n_classes, n, weights=weights, metric=metric,
                          temperature=temperature)


@pytest.mark.parametrize("weights", ["uniform", "distance", "softmax"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_imagenet21k_class_count_on_small_n(weights, metric):
    rng = np.random.default_rng(0)
    n, k = 40, 20
    # rows 0-19: neighbours spread over all classes; rows 20-39: 3 classes, many ties
    neigh_y = rng.integers(0, IMAGENET21K_CLASSES, (n, k))
    neigh_y[20:] = rng.choice([5, 21_000, IMAGENET21K_CLASSES - 1], (20, k))
    dist = np.sort(rng.choice([0.0, 0.1, 0.3, 0.3, 0.7], (n, k)), axis=1)
    dist[:10] = np.sort(rng.random((10, k)), axis=1)
    for top in (1, 5, 25, IMAGENET21K_CLASSES + 3):
        assert_matches_oracle(neigh_y, dist, IMAGENET21K_CLASSES, top, weights=weights,
                              metric=metric, temperature=0.07)


def test_exact_matches_and_tie_rules_by_hand():
    # distance weights with an exact match: only the matches vote; classes that
    # hold a non-voting neighbour still rank before classes with no neighbour
    ranked, scores = vote_topk(np.array([[3, 1, 1, 0]]), np.array([[0.0, 0.0, 0.5, 1.0]]), 6, 6,
                               weights="distance")
    np.testing.assert_array_equal(ranked, [[3, 1, 0, 2, 4, 5]])
    np.testing.assert_array_equal(scores, [[1, 1, 0, 0, 0, 0]])
    # uniform tie between classes 2 and 4: 4 holds the nearest neighbour
    ranked, _ = vote_topk(np.array([[4, 2, 2, 4, 7]]), np.ones((1, 5)), 8, 3)
    np.testing.assert_array_equal(ranked, [[4, 2, 7]])


def test_vote_topk_bad_arguments():
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            vote_topk(np.zeros((1, 2), int), np.ones((1, 2)), 2, bad)
    with pytest.raises(ValueError, match="class indices in 0..1"):
        vote_topk(np.array([[0, 2]]), np.ones((1, 2)), 2)
    with pytest.raises(ValueError, match="same shape"):
        vote_topk(np.zeros((1, 2), int), np.ones((2, 2)), 2)
    with pytest.raises(ValueError, match="weights must be one of"):
        vote_topk(np.zeros((1, 2), int), np.ones((1, 2)), 2, weights="gaussian")


# ------------------------------------------------------------ the estimator ---
def dense_reference(model, X):
    """What predict & co. gave before the sparse votes: dense scores, lexsort ranking."""
    dist, ind = model.kneighbors(X)
    neigh_y = model.y_fit_[ind]
    scores = vote_scores(neigh_y, dist, len(model.classes_), model.weights, model.temperature,
                         model.metric)
    return scores, vote_rank(scores, neigh_y)


def many_class_data(seed, n_classes=300, n_train=900, n_query=70, d=5):
    rng = np.random.default_rng(seed)
    # small integers: tied distances and tied votes
    X = rng.integers(0, 3, (n_train, d)).astype(np.float32)
    y = np.array([f"c{i:04d}" for i in rng.integers(0, n_classes, n_train)])
    y[:n_classes] = [f"c{i:04d}" for i in range(n_classes)]
    Q = rng.integers(0, 3, (n_query, d)).astype(np.float32)
    return X, y, Q


def force_blocks(monkeypatch, rows):
    """Make predict & co. search ``rows`` queries per call."""
    monkeypatch.setattr(knn, "_MIN_SEARCH_ROWS", rows)
    monkeypatch.setattr(knn, "_BYTES_PER_NEIGHBOUR", 2**50)


@pytest.mark.parametrize("blocks", [False, True])
@pytest.mark.parametrize("weights, metric", [("uniform", "l1"), ("distance", "l2"),
                                             ("softmax", "cosine"), ("softmax", "l2")])
def test_estimator_equals_dense_votes(monkeypatch, blocks, weights, metric):
    X, y, Q = many_class_data(1)
    y_true = y[:Q.shape[0]]
    if blocks:  # three search calls: 30, 30 and 10 queries
        force_blocks(monkeypatch, 30)
    model = KNearestNeighbor(k=9, metric=metric, weights=weights, temperature=0.3).fit(X, y)
    scores, ranked = dense_reference(model, Q)
    np.testing.assert_array_equal(model.predict(Q), model.classes_[ranked[:, 0]])
    np.testing.assert_array_equal(model.predict_topk(Q, 5), model.classes_[ranked[:, :5]])
    np.testing.assert_array_equal(model.predict_topk(Q, 1000), model.classes_[ranked])
    proba = model.predict_proba(Q)
    assert proba.tobytes() == (scores / scores.sum(axis=1, keepdims=True)).tobytes()
    assert model.score(Q, y_true) == np.mean(model.classes_[ranked[:, 0]] == y_true)
    w = np.arange(Q.shape[0], dtype=float)
    assert model.score(Q, y_true, sample_weight=w) == pytest.approx(
        np.average(model.classes_[ranked[:, 0]] == y_true, weights=w))


def image_data():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (60, 4, 3, 1), dtype=np.uint8)
    y = rng.integers(0, 7, 60)
    Q = rng.integers(0, 256, (50, 4, 3, 1), dtype=np.uint8)
    return X, y, Q, KNearestNeighbor(k=3).fit(X, y).predict_topk(Q, 3)


def test_blocks_of_images(monkeypatch):
    X, y, Q, expected = image_data()
    force_blocks(monkeypatch, 20)
    model = KNearestNeighbor(k=3).fit(X, y)
    np.testing.assert_array_equal(model.predict_topk(Q, 3), expected)
    np.testing.assert_array_equal(model.predict(Q.reshape(50, -1).tolist()), expected[:, 0])


def test_blocks_check_feature_names_once(monkeypatch):
    pd = pytest.importorskip("pandas")
    X, y, Q, expected = image_data()
    force_blocks(monkeypatch, 20)
    model = KNearestNeighbor(k=3)
    # feature names are checked once, on the whole input: no warning from the blocks
    cols = [f"f{i}" for i in range(12)]
    model.fit(pd.DataFrame(X.reshape(60, -1), columns=cols), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = model.predict(pd.DataFrame(Q.reshape(50, -1), columns=cols))
    np.testing.assert_array_equal(got, expected[:, 0])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.predict(Q.reshape(50, -1))


def test_predict_on_many_classes_stays_far_below_dense_memory():
    rng = np.random.default_rng(3)
    n_train, n_query, k, d = 2 * IMAGENET21K_CLASSES, 2000, 20, 8
    X = rng.standard_normal((n_train, d)).astype(np.float32)
    y = np.arange(n_train) % IMAGENET21K_CLASSES  # two rows per class
    Q = rng.standard_normal((n_query, d)).astype(np.float32)
    working_memory = 8  # MiB
    model = KNearestNeighbor(k=k, metric="cosine", weights="softmax",
                             working_memory=working_memory).fit(X, y)
    model.predict(Q[:5])  # compile the kernels outside the measurement
    with traced_peak() as peak:
        pred = model.predict(Q)
        top = model.predict_topk(Q, 5)
    dense = n_query * IMAGENET21K_CLASSES * 8  # one float64 score array: 350 MB
    bound = working_memory * 2**20 + n_query * k * 128 + 2 * 2**20
    assert peak.bytes < bound < dense / 10
    np.testing.assert_array_equal(top[:, 0], pred)


@pytest.mark.parametrize("cache_memory", [0, 1024])
def test_query_blocks_and_their_search_share_working_memory(cache_memory):
    # wide float16 queries: each block's float32 copy is a large part of the
    # budget, and the search inside the block needs tiles of its own
    rng = np.random.default_rng(4)
    n_train, n_query, k, d = 6000, 5000, 20, 512
    X = rng.standard_normal((n_train, d)).astype(np.float16)
    y = np.arange(n_train) % 1000
    Q = rng.standard_normal((n_query, d)).astype(np.float16)
    working_memory = 16  # MiB: several query blocks
    model = KNearestNeighbor(k=k, metric="cosine", weights="softmax",
                             working_memory=working_memory, cache_memory=cache_memory).fit(X, y)
    rows, search_memory = knn.search_block_rows(d, k, working_memory)
    assert rows < n_query and search_memory == working_memory / 2
    model.predict(Q[:5])
    with traced_peak() as peak:
        top = model.predict_topk(Q, 5)
    bound = working_memory * 2**20 + n_query * k * 32
    assert peak.bytes < bound
    np.testing.assert_array_equal(top[:, 0], model.predict(Q))
