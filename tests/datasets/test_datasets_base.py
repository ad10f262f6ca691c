import json

import numpy as np
import pytest

import imgcls
from imgcls.datasets import Dataset, list_datasets, load_dataset
from imgcls.errors import ConfigError, DatasetError


def _ds(**kw):
    base = dict(name="t", X_train=np.zeros((3, 2, 2, 1), np.uint8),
                y_train=np.array([0, 1, 1]), X_test=np.zeros((1, 2, 2, 1), np.uint8),
                y_test=np.array([1]), classes=["a", "b"], source="here")
    base.update(kw)
    return Dataset(**base)


def test_list_datasets_names_every_family():
    assert list_datasets() == ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
                               "folder:PATH", "npz:PATH", "features:PATH"]


def test_public_names_are_lazy_attributes_of_imgcls():
    assert imgcls.load_dataset is load_dataset
    assert imgcls.Dataset is Dataset


@pytest.mark.parametrize("name", ["nope", "folder", "mnist:/x", "", None, "npz:"])
def test_unknown_or_malformed_names_raise_config_error(name):
    with pytest.raises(ConfigError, match="dataset"):
        load_dataset(name)


def test_unknown_option_is_refused_by_name():
    with pytest.raises(ConfigError, match="colour"):
        load_dataset("digits", colour="red")


def test_dataset_checks_the_label_contract():
    with pytest.raises(DatasetError, match="int64"):
        _ds(y_train=np.array([0, 1, 1], dtype=np.int32))
    with pytest.raises(DatasetError, match="outside 0..1"):
        _ds(y_test=np.array([2], dtype=np.int64))
    with pytest.raises(DatasetError, match="3 samples but y_train has 2"):
        _ds(y_train=np.array([0, 1], dtype=np.int64))


def test_summary_is_json_and_counts_per_split():
    ds = _ds(y_train=np.array([0, 1, 1], dtype=np.int64), y_test=np.array([1], dtype=np.int64))
    s = json.loads(json.dumps(ds.summary()))
    assert s["counts"] == {"train": [1, 2], "test": [0, 1]}
    assert s["image_shape"] == [2, 2, 1] and s["n_features"] == 4
    assert s["n_train"] == 3 and s["n_test"] == 1 and s["n_classes"] == 2
    assert s["classes"] == ["a", "b"] and s["dtype"] == "uint8" and s["source"] == "here"


def test_digits_default_split_is_documented_and_stable():
    ds = load_dataset("digits")
    assert ds.X_train.shape == (1437, 8, 8, 1) and ds.X_test.shape == (360, 8, 8, 1)
    assert ds.X_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.X_train.max() == 255 and ds.X_train.min() == 0
    assert ds.classes == [str(i) for i in range(10)]
    # stratified: every class keeps ~20 % in the test split
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    np.testing.assert_array_equal(ds.X_test, again.X_test)
    assert "seed=0" in ds.source and "0..255" in ds.source


def test_digits_rescale_false_keeps_0_to_16_and_matches_sklearn():
    from sklearn.datasets import load_digits

    raw = load_dataset("digits", rescale=False, test_size=0.5, seed=3)
    assert raw.X_train.max() == 16
    scaled = load_dataset("digits", test_size=0.5, seed=3)
    np.testing.assert_array_equal(scaled.X_train, (raw.X_train.astype(int) * 255 + 8) // 16)
    all_images = np.sort(load_digits().images.reshape(len(load_digits().images), -1), axis=0)
    mine = np.sort(np.concatenate([raw.X_train, raw.X_test]).reshape(-1, 64), axis=0)
    np.testing.assert_array_equal(mine, all_images)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2", True])
def test_digits_rejects_bad_test_size(bad):
    with pytest.raises(ConfigError, match="test_size"):
        load_dataset("digits", test_size=bad)


# SHA-256 over (X_train, y_train, X_test, y_test) bytes + shapes/dtypes of the default
# digits split, as loaded before the registry became a static table: the data set
# the `imgcls run digits` results rest on must stay byte-identical.
DIGITS_DEFAULT_SHA256 = "ecb727c46ee8e728ec9c3fea6753e0bce62f7427dd3a5de39894d3955cef925a"


def test_digits_default_split_is_byte_identical():
    import hashlib

    ds = load_dataset("digits")
    h = hashlib.sha256()
    for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test):
        h.update(a.tobytes())
        h.update(str((a.shape, a.dtype)).encode())
    assert h.hexdigest() == DIGITS_DEFAULT_SHA256
