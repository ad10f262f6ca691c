import numpy as np
import pytest

from datasets_helpers import snapshot
from imgcls.datasets import load_dataset
from imgcls.errors import DatasetError, FormatError


def test_npz_with_given_split_and_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "emb.npz"
    np.savez(path, X_train=rng.normal(size=(6, 4)).astype(np.float32),
             y_train=np.array(["dog", "cat", "dog", "bird", "cat", "dog"]),
             X_test=rng.normal(size=(3, 4)).astype(np.float32),
             y_test=np.array(["cat", "bird", "dog"]))
    ds = load_dataset(f"npz:{path}")
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.y_train.tolist() == [2, 1, 2, 0, 1, 2] and ds.y_test.tolist() == [1, 0, 2]
    assert ds.X_train.dtype == np.float32 and ds.X_train.shape == (6, 4)
    s = ds.summary()
    assert s["image_shape"] is None and s["n_features"] == 4 and s["dtype"] == "float32"


def test_npz_with_x_y_is_split_stratified_and_seeded(tmp_path):
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.repeat([5, 7], 10)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    ds = load_dataset(f"npz:{tmp_path / 'a.npz'}", test_size=0.2, seed=4)
    assert ds.classes == ["5", "7"] and np.bincount(ds.y_test).tolist() == [2, 2]
    assert ds.X_train.dtype == np.float64
    np.testing.assert_array_equal(ds.X_train[:, 0] >= 20, ds.y_train == 1)
    again = load_dataset(f"npz:{tmp_path / 'a.npz'}", test_size=0.2, seed=4)
    np.testing.assert_array_equal(ds.X_test, again.X_test)


def test_npy_folder_with_classes_and_uint8_images(tmp_path):
    np.save(tmp_path / "X_train.npy", np.zeros((4, 5, 5), np.uint8))
    np.save(tmp_path / "y_train.npy", np.array([0, 1, 2, 1]))
    np.save(tmp_path / "X_test.npy", np.ones((2, 5, 5), np.uint8))
    np.save(tmp_path / "y_test.npy", np.array([2, 0]))
    np.save(tmp_path / "classes.npy", np.array(["zero", "one", "two"]))
    ds = load_dataset(f"npz:{tmp_path}")
    assert ds.X_train.shape == (4, 5, 5, 1) and ds.classes == ["zero", "one", "two"]
    assert ds.y_test.tolist() == [2, 0]


def test_float16_and_int_features_are_widened(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((10, 3), np.float16), y=np.arange(10) % 2)
    assert load_dataset(f"npz:{tmp_path / 'a.npz'}").X_train.dtype == np.float32
    np.savez(tmp_path / "b.npz", X=np.ones((10, 3), np.int32), y=np.arange(10) % 2)
    assert load_dataset(f"npz:{tmp_path / 'b.npz'}").X_train.dtype == np.float64


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    before = snapshot(tmp_path)
    with pytest.raises(FormatError, match=f"{path}.*without pickle"):
        load_dataset(f"npz:{path}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("arrays, msg", [
    ({"X": np.ones((4, 2)), "y": np.array([0, 1, 0])}, "4 samples but .*3 labels"),
    ({"X": np.ones((4, 2)), "y": np.array([0.5, 1, 0, 1])}, "integers or strings"),
    ({"X": np.array([[np.nan, 1.0]] * 4), "y": np.array([0, 1, 0, 1])}, "NaN"),
    ({"X": np.ones(4), "y": np.array([0, 1, 0, 1])}, "shape \\(n, d\\)"),
    ({"features": np.ones((4, 2))}, "expected arrays X_train.*found \\['features'\\]"),
    ({"X_train": np.ones((2, 3)), "y_train": np.array([0, 1]), "X_test": np.ones((2, 4)),
      "y_test": np.array([0, 1])}, "X_train samples have shape \\(3,\\) but X_test"),
    ({"X_train": np.ones((2, 3)), "y_train": np.array([0, 1]), "X_test": np.ones((2, 3)),
      "y_test": np.array([0, 5]), "classes": np.array(["a", "b"])}, "0..1"),
    ({"X": np.ones((4, 2)), "y": np.array(["a", "b", "a", "c"]),
      "classes": np.array(["a", "b"])}, "\\['c'\\] are not in classes"),
])
def test_bad_arrays_name_the_file(tmp_path, arrays, msg):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=msg):
        load_dataset(f"npz:{path}")


def test_not_an_npz_file(tmp_path):
    path = tmp_path / "page.npz"
    path.write_bytes(b"<!DOCTYPE html><html></html>")
    with pytest.raises(FormatError, match=f"{path}.*not a readable .npz"):
        load_dataset(f"npz:{path}")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="no X_train.npy"):
        load_dataset(f"npz:{empty}")


def test_single_npy_file_is_explained(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    with pytest.raises(FormatError, match="single .npy array"):
        load_dataset(f"npz:{tmp_path / 'X.npy'}")
