"""The exact search against faiss, the tool users would otherwise reach for.

On continuous random data there are no distance ties, so the neighbour lists
must be identical and the distances equal up to faiss's float32 rounding.
"""

import numpy as np
import pytest

from imgcls.neighbors.search import knn_search

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.random((300, 40), dtype=np.float32), rng.random((2000, 40), dtype=np.float32)


def _faiss_search(index, Xq, Xt, k):
    index.add(np.ascontiguousarray(Xt))
    return index.search(np.ascontiguousarray(Xq), k)


@pytest.mark.parametrize("block", [None, 64])
def test_l2_equals_faiss_flat_l2(data, block):
    Xq, Xt = data
    dist, ind = knn_search(Xq, Xt, 10, "l2", _block_rows=block)
    D, I = _faiss_search(faiss.IndexFlatL2(Xt.shape[1]), Xq, Xt, 10)
    np.testing.assert_array_equal(ind, I)
    np.testing.assert_allclose(dist, np.sqrt(np.maximum(D, 0)), rtol=1e-4)


def test_l1_equals_faiss_metric_l1(data):
    Xq, Xt = data
    dist, ind = knn_search(Xq, Xt, 10, "l1")
    D, I = _faiss_search(faiss.IndexFlat(Xt.shape[1], faiss.METRIC_L1), Xq, Xt, 10)
    # faiss before 1.14 sums |x - y| in float32 in an order that makes two of these
    # neighbours tie (row 79), and lists a tie by index; ours sums in float64.  So
    # the lists must agree up to the order within a run of equal faiss distances.
    for row in range(len(D)):
        for d in np.unique(D[row]):
            tied = D[row] == d
            assert set(ind[row, tied]) == set(I[row, tied]), (row, ind[row], I[row])
    np.testing.assert_allclose(dist, D, rtol=1e-5)


def test_cosine_equals_faiss_inner_product_on_normalised_rows(data):
    Xq, Xt = data
    dist, ind = knn_search(Xq, Xt, 10, "cosine")
    qn = Xq / np.linalg.norm(Xq, axis=1, keepdims=True)
    tn = Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
    D, I = _faiss_search(faiss.IndexFlatIP(Xt.shape[1]), qn, tn, 10)
    np.testing.assert_array_equal(ind, I)
    np.testing.assert_allclose(dist, 1.0 - D, atol=1e-5)


def test_uint8_l2_equals_faiss(data):
    rng = np.random.default_rng(3)
    Xt = rng.integers(0, 256, (1500, 64), dtype=np.uint8)
    Xq = rng.integers(0, 256, (200, 64), dtype=np.uint8)
    dist, ind = knn_search(Xq, Xt, 5, "l2")
    D, I = _faiss_search(faiss.IndexFlatL2(64), Xq.astype(np.float32), Xt.astype(np.float32), 5)
    # integer distances can tie exactly; faiss orders ties arbitrarily, so
    # compare the sets of distances, and indices only where the row has no tie
    np.testing.assert_allclose(dist ** 2, D, rtol=1e-6)
    no_tie = (np.diff(dist, axis=1) > 0).all(axis=1)
    assert no_tie.mean() > 0.9
    np.testing.assert_array_equal(ind[no_tie], I[no_tie])
