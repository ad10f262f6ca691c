"""save/load round trips: the stand-in estimator, and imgcls's own estimators."""

from __future__ import annotations

import os

import numpy as np
import pytest
from io_helpers import REGISTRY, Centroid, data
from sklearn.exceptions import NotFittedError

import imgcls
from imgcls.io import (FORMAT_VERSION, load, read_metadata, register_estimator, save,
                       unregister_estimator)


def _same_attributes(a, b):
    learned = sorted(k for k in vars(a) if k.endswith("_") and not k.startswith("_"))
    assert learned == sorted(k for k in vars(b) if k.endswith("_") and k != "class_names_")
    for k in learned:
        va, vb = getattr(a, k), getattr(b, k)
        assert type(va) is type(vb), k
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and va.shape == vb.shape, k
            assert np.array_equal(va, vb), k
        elif k == "extras_":
            assert vb[0] == (1, 2) and isinstance(vb[0], tuple)
            assert np.isnan(vb["nan"]) and vb["n"] == 7 and type(vb["n"]) is np.int64
            assert list(vb) == [0, "nan", "n"]
        else:
            assert va == vb, k


def test_round_trip_stand_in(tmp_path, fitted):
    model, X = fitted
    path = save(model, tmp_path / "m.safetensors", classes=["zero", "one", "two"],
                registry=REGISTRY)
    assert path == tmp_path / "m.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    loaded = load(path, registry=REGISTRY)
    assert type(loaded) is Centroid
    assert loaded.get_params() == model.get_params()
    assert loaded.tags == ("a", 1) and isinstance(loaded.tags, tuple)
    _same_attributes(model, loaded)
    assert loaded.image_shape_ == (4, 4, 1)
    assert loaded.class_names_ == ["zero", "one", "two"]
    assert not hasattr(loaded, "_cache")
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert np.array_equal(loaded.decision_function(X), model.decision_function(X))


def test_string_classes_and_flat_input(tmp_path):
    X, y = data(shape=(6,), labels=np.array(["cat", "dog", "emu"]))
    X = X.reshape(len(X), -1)
    model = Centroid().fit(X, y)
    loaded = load(save(model, tmp_path / "m.st", registry=REGISTRY), registry=REGISTRY)
    assert loaded.classes_.dtype == model.classes_.dtype and list(loaded.classes_) == ["cat", "dog", "emu"]
    assert loaded.image_shape_ is None
    assert not hasattr(loaded, "class_names_")  # none were given
    assert np.array_equal(loaded.predict(X), model.predict(X))
    meta = read_metadata(tmp_path / "m.st")
    assert meta["classes"] == {"dtype": "<U3", "values": ["cat", "dog", "emu"]}
    assert meta["input"] == {"image_shape": None, "n_features": 6}


def test_metadata_document(model_file):
    meta = read_metadata(model_file)
    assert meta["format"] == "imgcls-model" and meta["format_version"] == FORMAT_VERSION
    assert meta["imgcls_version"] == imgcls.__version__
    assert meta["estimator"] == "Centroid"
    assert meta["params"] == {"shrink": 0.25, "metric": "l2", "tags": {"$tuple": ["a", 1]}}
    assert meta["classes"] == {"dtype": "int64", "values": [0, 1, 2]}
    assert meta["class_names"] == ["zero", "one", "two"]
    assert meta["input"] == {"image_shape": [4, 4, 1], "n_features": 16}
    assert meta["preprocessing"]["learned"] == ["mean_"]
    assert set(meta["attributes"]) == {"W_", "classes_", "counts_", "mean_", "history_",
                                       "extras_", "labels_text_", "image_shape_",
                                       "n_features_in_"}
    assert meta["attributes"]["W_"] == {"tensor": {"dtype": "float32", "shape": [3, 16]}}
    assert len(meta["payload_sha256"]) == 64 and len(meta["metadata_sha256"]) == 64


def test_public_names_and_register_estimator(tmp_path, fitted):
    model, X = fitted
    assert imgcls.save is save and imgcls.load is load
    with pytest.raises(ValueError, match="only these estimator classes can be saved"):
        imgcls.save(model, tmp_path / "m.st")
    register_estimator(Centroid)
    try:
        imgcls.save(model, tmp_path / "m.st", preprocessing={"scale": "x / 255"})
        loaded = imgcls.load(tmp_path / "m.st")
        assert np.array_equal(loaded.predict(X), model.predict(X))
        assert read_metadata(tmp_path / "m.st")["preprocessing"] == {"scale": "x / 255"}
    finally:
        unregister_estimator("Centroid")
    with pytest.raises(imgcls.ModelFileError, match="unknown estimator class 'Centroid'"):
        imgcls.load(tmp_path / "m.st")


def test_register_estimator_cannot_replace_builtins():
    with pytest.raises(ValueError, match="built-in"):
        register_estimator(Centroid, name="Softmax")
    register_estimator(Centroid, name="Centroid2")
    try:
        class Other(Centroid):
            """Another class under a taken name."""
        with pytest.raises(ValueError, match="already registered"):
            register_estimator(Other, name="Centroid2")
    finally:
        unregister_estimator("Centroid2")


def test_save_overwrites_atomically(tmp_path, fitted):
    model, X = fitted
    path = tmp_path / "m.st"
    save(model, path, registry=REGISTRY)
    other = Centroid(shrink=1.0).fit(*data(seed=5))
    save(other, path, registry=REGISTRY)
    assert load(path, registry=REGISTRY).shrink == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.st"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------ save refuses

def _listing(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_save_refuses_unfitted(tmp_path):
    with pytest.raises(NotFittedError, match="cannot save .*m.st.*Centroid is not fitted yet"):
        save(Centroid(), tmp_path / "m.st", registry=REGISTRY)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_classes_not_on_the_allow_list(tmp_path, fitted):
    model, _ = fitted

    class Sub(Centroid):
        """A subclass is not the allowed class."""

    sub = Sub().fit(*data())
    from sklearn.neighbors import KNeighborsClassifier

    sk = KNeighborsClassifier(n_neighbors=1).fit(np.zeros((2, 2)), [0, 1])
    for bad in (sub, sk, {"W_": 1}):
        with pytest.raises(ValueError, match="only these estimator classes can be saved: "
                                             "Centroid, ColorHistogram, HOG, KMeansFeatures, "
                                             "KNearestNeighbor, LinearSVM"):
            save(bad, tmp_path / "m.st", registry=REGISTRY)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_values_without_a_file_form(tmp_path, fitted):
    model, _ = fitted
    save(model, tmp_path / "m.st", registry=REGISTRY)
    before = _listing(tmp_path)
    bad_param = Centroid(tags=(object(),)).fit(*data())
    with pytest.raises(ValueError, match=r"params\['tags'\]\[0\]: a builtins.object"):
        save(bad_param, tmp_path / "m.st", registry=REGISTRY)
    bad_attr = Centroid().fit(*data())
    bad_attr.weird_ = np.array([1 + 2j])
    with pytest.raises(ValueError, match="learned attribute weird_: an array of dtype complex128"):
        save(bad_attr, tmp_path / "m.st", registry=REGISTRY)
    with pytest.raises(ValueError, match="classes: 2 names given but the model has 3 classes"):
        save(model, tmp_path / "m.st", classes=["a", "b"], registry=REGISTRY)
    with pytest.raises(ValueError, match="preprocessing: must be JSON-able"):
        save(model, tmp_path / "m.st", preprocessing={"f": object()}, registry=REGISTRY)
    assert _listing(tmp_path) == before


def test_save_to_bad_paths(tmp_path, fitted):
    model, _ = fitted
    with pytest.raises(IsADirectoryError, match="is a directory"):
        save(model, tmp_path, registry=REGISTRY)
    with pytest.raises(OSError, match="missing.*does not exist"):
        save(model, tmp_path / "missing" / "m.st", registry=REGISTRY)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path, fitted, monkeypatch):
    model, _ = fitted
    path = save(model, tmp_path / "m.st", registry=REGISTRY)
    before = _listing(tmp_path)

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        save(Centroid(shrink=1.0).fit(*data()), path, registry=REGISTRY)
    assert _listing(tmp_path) == before


# ------------------------------------------------------------ imgcls's own estimators

def _import_builtin(module, name):
    """The estimator, or a skip while its module is still being written."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"{module}.{name} is not available yet ({exc})")


@pytest.mark.parametrize("module, name, params", [
    ("imgcls.neighbors", "KNearestNeighbor", {"k": 3, "metric": "l2"}),
    ("imgcls.neighbors", "KNearestNeighbor", {"k": 5, "metric": "l1", "weights": "distance"}),
    ("imgcls.neighbors", "NearestNeighbor", {}),
    ("imgcls.linear", "LinearSVM", {}),
    ("imgcls.linear", "Softmax", {}),
])
def test_round_trip_imgcls_estimators(tmp_path, module, name, params):
    cls = _import_builtin(module, name)
    X, y = data(n=60, shape=(6, 6, 1), n_classes=3, seed=1)
    Xq, _ = data(n=15, shape=(6, 6, 1), n_classes=3, seed=2)
    est = cls(**params)
    if "random_state" in est.get_params():
        est.set_params(random_state=0)
    model = est.fit(X, y)
    path = save(model, tmp_path / f"{name}.safetensors", classes=["a", "b", "c"])
    loaded = load(path)
    assert type(loaded) is cls
    assert loaded.get_params() == model.get_params()
    assert loaded.class_names_ == ["a", "b", "c"]
    assert np.array_equal(loaded.predict(Xq), model.predict(Xq))
    for method in ("decision_function", "predict_proba"):
        if hasattr(model, method):
            assert np.array_equal(getattr(loaded, method)(Xq), getattr(model, method)(Xq))
    if hasattr(model, "predict_topk"):
        assert np.array_equal(loaded.predict_topk(Xq, n=3), model.predict_topk(Xq, n=3))
    if hasattr(model, "kneighbors"):
        for a, b in zip(loaded.kneighbors(Xq, n_neighbors=2), model.kneighbors(Xq, n_neighbors=2)):
            assert np.array_equal(a, b)


def _nested_tuple(depth):
    value = 1
    for _ in range(depth):
        value = (value,)
    return value


def _contains_itself():
    value = [1]
    value.append(value)
    return value


@pytest.mark.parametrize("attribute, value, message", [
    ("deep_", _nested_tuple(70), "nested deeper than 128 levels"),      # JSON depth, not codec
    ("deeper_", _nested_tuple(150), "nested deeper than 100 levels"),
    ("loop_", _contains_itself(), "contains itself"),
    ("big_", 10 ** 150, "an integer with 151 digits"),
    ("padded_", np.array(["a"] * 100_000, dtype="<U64"), "larger than its values need"),
])
def test_save_refuses_what_load_would_refuse(tmp_path, fitted, attribute, value, message):
    model, _ = fitted
    setattr(model, attribute, value)
    with pytest.raises(ValueError, match=f"cannot save Centroid: .*{message}"):
        save(model, tmp_path / "m.st", registry=REGISTRY)
    assert list(tmp_path.iterdir()) == []
