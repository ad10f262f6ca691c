import numpy as np
import pytest

from imgcls.metrics import recall_at_k


def _reference(approx, exact, k):
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact)]))


def test_recall_matches_set_reference():
    rng = np.random.default_rng(0)
    n, k = 200, 7
    exact = np.stack([rng.choice(50, size=k, replace=False) for _ in range(n)])
    approx = np.stack([rng.choice(50, size=k, replace=False) for _ in range(n)])
    approx[:50] = exact[:50][:, ::-1]  # order within a row does not matter
    for kk in (1, 3, k):
        assert recall_at_k(approx, exact, k=kk) == pytest.approx(_reference(approx, exact, kk))
    assert recall_at_k(exact, exact) == 1.0


def test_rows_do_not_match_each_other():
    exact = np.array([[0, 1], [2, 3]])
    approx = np.array([[2, 3], [0, 1]])
    assert recall_at_k(approx, exact) == 0.0
    approx = np.array([[1, -1], [3, 2]])  # faiss pads missing neighbours with -1
    assert recall_at_k(approx, exact) == pytest.approx(0.75)


def test_default_k_is_common_width():
    exact = np.array([[0, 1, 2]])
    approx = np.array([[1, 0, 9, 2]])
    assert recall_at_k(approx, exact) == 2 / 3


@pytest.mark.parametrize("approx, exact, k, match", [
    (np.zeros((2, 2), int), np.zeros((3, 2), int), None, "queries"),
    (np.zeros(2, int), np.zeros((2, 2), int), None, "2-D"),
    (np.zeros((2, 2)), np.array([[0, 1], [0, 1]]), None, "integer"),
    (np.array([[0, 1]]), np.array([[0, 0]]), None, "repeats"),
    (np.array([[0, 1]]), np.array([[-1, 0]]), None, "negative"),
    (np.array([[0, 1]]), np.array([[0, 1]]), 3, "k must"),
    (np.array([[0, 1]]), np.array([[0, 1]]), True, "k must"),
    (np.zeros((0, 2), int), np.zeros((0, 2), int), None, "empty"),
])
def test_bad_inputs(approx, exact, k, match):
    with pytest.raises(ValueError, match=match):
        recall_at_k(approx, exact, k=k)
