"""KNearestNeighbor on a ShardedArray (features:DIR in several files) equals it on one array."""

import numpy as np
import pytest

from imgcls.datasets.features import ShardedArray
from imgcls.neighbors import KNearestNeighbor
from imgcls.neighbors.shards import merge_topk


def _data(dtype, n=150, d=9, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n, d)).astype(dtype)  # few values: ties everywhere
    X[60:64] = X[3]  # duplicates across a shard boundary
    return X, rng.integers(0, 3, n), rng.integers(0, 4, (23, d)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
def test_sharded_training_set_equals_one_array(dtype, metric):
    X, y, Q = _data(dtype)
    cuts = [0, 10, 10, 61, 150]  # an empty shard; ties straddle 61
    sharded = ShardedArray([X[a:b] for a, b in zip(cuts[:-1], cuts[1:])])
    one = KNearestNeighbor(k=6, metric=metric, weights="distance").fit(X, y)
    many = KNearestNeighbor(k=6, metric=metric, weights="distance").fit(sharded, y)
    assert many.X_fit_ is sharded  # kept as given, not concatenated
    for q in (Q, None):  # queries, and leave-one-out over the training rows
        d1, i1 = one.kneighbors(q)
        d2, i2 = many.kneighbors(q)
        np.testing.assert_array_equal(i2, i1)
        np.testing.assert_array_equal(d2, d1)
    np.testing.assert_array_equal(many.predict_proba(Q), one.predict_proba(Q))
    np.testing.assert_array_equal(many.predict_topk(Q, 2), one.predict_topk(Q, 2))


def test_sharded_fit_refuses_nan_and_label_mismatch():
    X, y, _ = _data(np.float32)
    bad = X.copy()
    bad[100, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KNearestNeighbor().fit(ShardedArray([bad[:50], bad[50:]]), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        KNearestNeighbor().fit(ShardedArray([X[:50], X[50:]]), y[:-1])


def test_merge_topk_orders_by_distance_then_index():
    d = [np.array([[0.5, 1.0]]), np.array([[0.5, 0.7]])]
    i = [np.array([[7, 2]]), np.array([[3, 9]])]
    dist, ind = merge_topk(d, i, 3)
    np.testing.assert_array_equal(ind, [[3, 7, 9]])
    np.testing.assert_array_equal(dist, [[0.5, 0.5, 0.7]])


def test_sharded_model_saves_and_loads(tmp_path):
    import imgcls

    X, y, Q = _data(np.float16)
    model = KNearestNeighbor(k=4, metric="cosine").fit(ShardedArray([X[:70], X[70:]]), y)
    imgcls.save(model, tmp_path / "m.safetensors")
    loaded = imgcls.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.X_fit_, X)
    np.testing.assert_array_equal(loaded.predict_proba(Q), model.predict_proba(Q))
