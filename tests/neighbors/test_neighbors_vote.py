"""Votes: weights, exact matches, stability, and the tie rule."""

import numpy as np
import pytest

from imgcls.neighbors.vote import vote_rank, vote_scores


def test_uniform_counts_and_tie_goes_to_nearest_neighbour_class():
    neigh_y = np.array([[2, 1, 1, 2], [0, 1, 2, 3]])
    dist = np.array([[1.0, 2, 3, 4], [1, 2, 3, 4]])
    s = vote_scores(neigh_y, dist, 4)
    np.testing.assert_array_equal(s, [[0, 2, 2, 0], [1, 1, 1, 1]])
    r = vote_rank(s, neigh_y)
    # row 0: classes 1 and 2 tie, 2 holds the nearest neighbour; then 0, 3 by index
    np.testing.assert_array_equal(r[0], [2, 1, 0, 3])
    np.testing.assert_array_equal(r[1], [0, 1, 2, 3])


def test_only_given_columns_vote():
    neigh_y = np.array([[1, 0, 0]])
    dist = np.array([[1.0, 2, 3]])
    assert vote_rank(vote_scores(neigh_y[:, :1], dist[:, :1], 2), neigh_y[:, :1])[0, 0] == 1
    assert vote_rank(vote_scores(neigh_y, dist, 2), neigh_y)[0, 0] == 0


def test_distance_weights_exact_matches_take_the_vote():
    neigh_y = np.array([[0, 1, 1], [0, 1, 1]])
    dist = np.array([[0.0, 0.0, 1e-300], [1.0, 0.5, 0.25]])
    s = vote_scores(neigh_y, dist, 2, weights="distance")
    assert np.isfinite(s).all()
    np.testing.assert_array_equal(s[0], [1, 1])
    np.testing.assert_allclose(s[1], [1, 6])
    assert (s.sum(axis=1) > 0).all()


def test_softmax_is_stable_and_uses_similarity():
    neigh_y = np.array([[0, 1]])
    # huge distances would overflow exp(-d / T) without the max shift
    s = vote_scores(neigh_y, np.array([[1e6, 1e6 + 0.07]]), 2, weights="softmax",
                    temperature=0.07, metric="l2")
    np.testing.assert_allclose(s[0], [1, np.exp(-1)])
    # cosine: similarity 1 - d, same ranking
    s = vote_scores(neigh_y, np.array([[0.1, 0.2]]), 2, weights="softmax", temperature=0.1,
                    metric="cosine")
    np.testing.assert_allclose(s[0] / s[0, 0], [1, np.exp(-1)])


@pytest.mark.parametrize("kwargs, msg", [
    (dict(weights="gaussian"), "weights must be one of"),
    (dict(weights="softmax", temperature=0), "temperature must be > 0"),
])
def test_bad_vote_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        vote_scores(np.zeros((1, 2), int), np.ones((1, 2)), 2, **kwargs)


def test_bad_vote_shapes_and_labels():
    with pytest.raises(ValueError, match="same shape"):
        vote_scores(np.zeros((1, 2), int), np.ones((1, 3)), 2)
    with pytest.raises(ValueError, match="class indices in 0..1"):
        vote_scores(np.array([[0, 2]]), np.ones((1, 2)), 2)
    with pytest.raises(ValueError, match="at least one neighbour"):
        vote_scores(np.zeros((1, 0), int), np.ones((1, 0)), 2)
