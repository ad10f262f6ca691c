"""Seeded stratified splits and their bad inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import StratifiedKFold

from imgcls.errors import ConfigError
from imgcls.selection import stratified_kfold, train_val_split


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [50, 30, 20, 10])
    X = rng.normal(size=(y.size, 3))
    return X, y


def test_train_val_split_stratified_and_seeded(data):
    X, y = data
    X_tr, X_val, y_tr, y_val = train_val_split(X, y, val_size=0.2, seed=3)
    assert len(y_val) == 22 and len(y_tr) == 88
    np.testing.assert_array_equal(np.bincount(y_val), [10, 6, 4, 2])
    again = train_val_split(X, y, val_size=0.2, seed=3)
    np.testing.assert_array_equal(again[3], y_val)
    np.testing.assert_array_equal(again[1], X_val)
    other = train_val_split(X, y, val_size=0.2, seed=4)
    assert not np.array_equal(other[1], X_val)
    # every sample lands in exactly one part
    rows = {tuple(r) for r in np.vstack([X_tr, X_val])}
    assert rows == {tuple(r) for r in X}


def test_train_val_split_count(data):
    X, y = data
    _, X_val, _, _ = train_val_split(X, y, val_size=20, seed=0)
    assert len(X_val) == 20


def test_stratified_kfold_partitions_and_matches_sklearn(data):
    X, y = data
    splits = stratified_kfold(y, folds=5, seed=1)
    assert len(splits) == 5
    val = np.concatenate([va for _, va in splits])
    np.testing.assert_array_equal(np.sort(val), np.arange(y.size))
    for tr, va in splits:
        assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == y.size
        np.testing.assert_array_equal(np.bincount(y[va]), [10, 6, 4, 2])
    ref = StratifiedKFold(5, shuffle=True, random_state=1).split(X, y)
    for (tr, va), (rtr, rva) in zip(splits, ref):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(va, rva)


@pytest.mark.parametrize("kwargs, match", [
    (dict(val_size=0.0), r"val_size must be a fraction in \(0, 1\)"),
    (dict(val_size=1.5), r"val_size must be a fraction in \(0, 1\)"),
    (dict(val_size=110), "val_size=110 samples must be between 1 and 109"),
    (dict(val_size=2), "fewer than the 4 classes"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(seed=1.5), "seed must be a non-negative integer"),
])
def test_train_val_split_bad(data, kwargs, match):
    X, y = data
    X_before = X.copy()
    with pytest.raises(ConfigError, match=match):
        train_val_split(X, y, **kwargs)
    np.testing.assert_array_equal(X, X_before)


def test_train_val_split_singleton_class():
    y = np.array([0, 0, 0, 1])
    with pytest.raises(ConfigError, match="class 1 has only 1 sample"):
        train_val_split(np.zeros((4, 2)), y, val_size=0.5)


def test_train_val_split_length_mismatch():
    with pytest.raises(ConfigError, match="X has 3 samples but y has 4"):
        train_val_split(np.zeros((3, 2)), np.array([0, 1, 0, 1]))


@pytest.mark.parametrize("folds, match", [
    (1, "folds must be an integer >= 2"),
    (2.0, "folds must be an integer >= 2"),
    (11, "folds=11 exceeds the 10 samples of class 3"),
])
def test_stratified_kfold_bad(data, folds, match):
    _, y = data
    with pytest.raises(ConfigError, match=match):
        stratified_kfold(y, folds=folds)


def test_stratified_kfold_bad_y():
    with pytest.raises(ConfigError, match="y must be 1-D"):
        stratified_kfold(np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="y is empty"):
        stratified_kfold(np.array([]))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 25), st.integers(1, 2000),
       st.sampled_from([0.3, 1.0, 10.0]))
def test_stratified_order_every_prefix_keeps_the_proportions(seed, n_classes, n, skew):
    from imgcls.selection.splits import stratified_order

    rng = np.random.default_rng(seed)
    y = rng.choice(n_classes, size=n, p=rng.dirichlet(np.full(n_classes, skew)))
    order = stratified_order(y, seed)
    assert order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(n))
    classes, counts = np.unique(y, return_counts=True)
    share = counts / n
    held = (y[order][:, None] == classes[None, :]).cumsum(0)  # per prefix, per class
    expected = np.arange(1, n + 1)[:, None] * share
    bound = (1 + len(classes) * share) / 2
    assert np.all(np.abs(held - expected) <= bound + 1e-9)
    assert np.array_equal(stratified_order(y, seed), order)  # seeded


def test_stratified_order_balanced_within_one_and_shuffled():
    from imgcls.selection.splits import stratified_order

    y = np.repeat(np.arange(10), 500)
    a, b = stratified_order(y, 0), stratified_order(y, 1)
    held = (y[a][:, None] == np.arange(10)).cumsum(0)
    assert np.abs(held - np.arange(1, 5001)[:, None] / 10).max() <= 1
    assert not np.array_equal(a, b)
    # within a class, the order is a shuffle, not the input order
    assert not np.array_equal(a[y[a] == 3], np.flatnonzero(y == 3))


def test_contiguous_rows_view_or_copy():
    from imgcls.selection.splits import contiguous_rows

    X = np.arange(40.0).reshape(10, 4)
    v = contiguous_rows(X, np.arange(3, 7))
    assert np.shares_memory(v, X) and np.array_equal(v, X[3:7])
    for rows in ([1, 2, 4], [5, 4, 3], [2], [3, 3]):
        got = contiguous_rows(X, np.array(rows))
        assert np.array_equal(got, X[rows])
    assert np.shares_memory(contiguous_rows(X, np.array([2])), X)
    assert not np.shares_memory(contiguous_rows(X, np.array([1, 2, 4])), X)
