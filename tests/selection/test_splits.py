"""Seeded stratified splits and their bad inputs."""

import numpy as np
import pytest
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
