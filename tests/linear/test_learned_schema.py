"""The learned-attribute schemas of every estimator and their one checker.

``imgcls._validation.validate_learned_attributes`` is what a model file's
attributes go through before they are set on an estimator.  Here: every fitted
estimator passes (all kinds of input and fitting), each kind of violation is
caught with a message naming the attribute, and random mutations of a valid
attribute dict either pass and then ``predict`` works, or raise ``ValueError``,
never anything else.  (kNN and linear models together: one vocabulary.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgcls._validation import validate_learned_attributes
from imgcls.linear import LinearSVM, Softmax
from imgcls.neighbors import KNearestNeighbor, NearestNeighbor

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (40, 4, 3, 2), dtype=np.uint8)
LABELS = np.arange(40) % 3


def learned(model):
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def _fit(make, X, y, **fit_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # L-BFGS capped at a few iterations warns
        return make().fit(X, y, **fit_kw)


FLAT = IMAGES.reshape(len(IMAGES), -1)
FITTED = {
    "knn-images": lambda: _fit(lambda: KNearestNeighbor(k=3), IMAGES, LABELS),
    "knn-float32-strings": lambda: _fit(lambda: KNearestNeighbor(k=2, metric="cosine"),
                                        FLAT.astype(np.float32), np.array(["a", "b", "c"])[LABELS]),
    "knn-float64-one-class": lambda: _fit(NearestNeighbor, FLAT.astype(np.float64),
                                          np.zeros(40, dtype=np.int64)),
    "knn-object-labels": lambda: _fit(NearestNeighbor, FLAT,
                                      np.array(["x", "y", "z"], dtype=object)[LABELS]),
    "svm-images": lambda: _fit(lambda: LinearSVM(epochs=2, random_state=0), IMAGES, LABELS),
    "svm-validation": lambda: _fit(lambda: LinearSVM(epochs=2, random_state=0), FLAT, LABELS,
                                   X_val=FLAT[:10], y_val=LABELS[:10]),
    "softmax-early-stopping": lambda: _fit(
        lambda: Softmax(epochs=3, early_stopping=True, standardize=True, random_state=0),
        FLAT.astype(np.float64), np.array([-1.0, 0.0, 2.0])[LABELS]),
    "softmax-lbfgs": lambda: _fit(lambda: Softmax(optimizer="lbfgs", epochs=3), IMAGES,
                                  LABELS % 2 == 0),
    "softmax-partial-fit": lambda: Softmax(random_state=0, schedule="step")
    .partial_fit(IMAGES, LABELS, classes=[0, 1, 2]).partial_fit(IMAGES[:7], LABELS[:7]),
}


@pytest.mark.parametrize("case", sorted(FITTED))
def test_every_fitted_estimator_passes(case):
    model = FITTED[case]()
    validate_learned_attributes(type(model), learned(model), params=model.get_params())


def test_loaded_models_pass_and_class_names_are_part_of_the_schema(tmp_path):
    io = pytest.importorskip("imgcls.io")
    for case in ("knn-images", "softmax-lbfgs", "svm-validation"):
        model = FITTED[case]()
        names = [f"class {c}" for c in model.classes_]
        back = io.load(io.save(model, tmp_path / f"{case}.safetensors", classes=names))
        validate_learned_attributes(type(back), learned(back), params=back.get_params())
        assert back.class_names_ == names
        # a loaded model saves and loads again with its class names
        again = io.load(io.save(back, tmp_path / f"{case}-2.safetensors"))
        validate_learned_attributes(type(again), learned(again))
        np.testing.assert_array_equal(again.predict(IMAGES), model.predict(IMAGES))


def test_a_class_without_schema_is_not_checked():
    class Plugin:
        pass

    validate_learned_attributes(Plugin, {"anything_": object()})


# ------------------------------------------------------------- each violation
def _mutated(case, **changes):
    model = FITTED[case]()
    attrs = learned(model)
    for k, v in changes.items():
        if v is _DROP:
            del attrs[k]
        else:
            attrs[k] = v(attrs[k]) if callable(v) else v
    return model, attrs


_DROP = object()

VIOLATIONS = [
    # (case, changes, attribute named, words of the cause)
    ("svm-images", {"W_": _DROP}, "W_", "missing"),
    ("knn-images", {"y_fit_": _DROP}, "y_fit_", "missing"),
    ("svm-images", {"templates_": np.zeros((3, 4, 3, 2))}, "templates_",
     "not a learned attribute"),
    ("knn-images", {"junk_": 1}, "junk_", "not a learned attribute"),
    ("knn-images", {"X_fit_": lambda a: a.astype(np.int16)}, "X_fit_", "dtype int16"),
    ("svm-images", {"W_": lambda a: a.astype(np.float32)}, "W_", "dtype float32"),
    ("knn-images", {"classes_": lambda a: np.array(a[0])}, "classes_", "axes"),
    ("knn-images", {"X_fit_": lambda a: a.reshape(-1)}, "X_fit_", "axes"),
    ("knn-images", {"y_fit_": lambda a: a[:-1]}, "y_fit_", "n_samples = 40 (from X_fit_)"),
    ("svm-images", {"classes_": lambda a: a[:2]}, "W_", "n_classes = 2 (from classes_)"),
    ("svm-images", {"b_": lambda a: a[:2]}, "b_", "n_classes = 3"),
    ("svm-images", {"mean_": lambda a: a[:-1]}, "mean_", "n_features = 24"),
    ("svm-images", {"n_features_in_": 25}, "image_shape_",
     "n_features = 25 (from n_features_in_)"),
    ("knn-float32-strings", {"n_features_in_": 25}, "X_fit_",
     "n_features = 25 (from n_features_in_)"),
    ("svm-images", {"image_shape_": (2**31, 2**31)}, "image_shape_", "product"),
    ("svm-images", {"image_shape_": (4, 3, 3)}, "image_shape_", "n_features = 24"),
    ("knn-images", {"image_shape_": (4, 3, 2, 1) * 10}, "image_shape_", "axes"),
    ("knn-images", {"image_shape_": (4, -3, -2)}, "image_shape_", "positive int"),
    ("knn-images", {"image_shape_": [4, 3, 2]}, "image_shape_", "tuple"),
    ("knn-images", {"y_fit_": lambda a: a + 1}, "y_fit_", "[0, 3)"),
    ("knn-images", {"y_fit_": lambda a: a - 1}, "y_fit_", "[0, 3)"),
    ("softmax-lbfgs", {"classes_": lambda a: a[:1], "W_": lambda a: a[:1],
                       "b_": lambda a: a[:1]}, "classes_", "n_classes must be >= 2"),
    ("knn-images", {"classes_": lambda a: a[::-1].copy()}, "classes_", "sorted"),
    ("svm-images", {"scale_": lambda a: np.where(np.arange(a.size) == 3, 0.0, a)}, "scale_",
     "> 0"),
    ("svm-images", {"scale_": lambda a: np.full_like(a, np.inf)}, "scale_", "infinite"),
    ("svm-images", {"W_": lambda a: np.where(a == a.flat[0], np.nan, a)}, "W_", "NaN"),
    ("svm-images", {"b_": lambda a: a + np.inf}, "b_", "infinite"),
    ("knn-float32-strings", {"X_fit_": lambda a: np.where(a == a.flat[0], np.nan, a)}, "X_fit_",
     "NaN"),
    ("svm-images", {"input_scale_": 0.0}, "input_scale_", "> 0"),
    ("svm-images", {"input_scale_": "255"}, "input_scale_", "number"),
    ("svm-images", {"history_": lambda h: tuple(h)}, "history_", "list"),
    ("svm-images", {"history_": lambda h: h + [{"epoch": 3}]}, "history_", "entry 2"),
    ("svm-images", {"history_": lambda h: [{**h[0], "loss": "low"}] + h[1:]}, "history_",
     "'loss'"),
    ("svm-images", {"history_": lambda h: [{**h[0], "train_acc": 1.5}] + h[1:]}, "history_",
     "'train_acc'"),
    ("svm-images", {"n_iter_": 5}, "n_iter_", "n_epochs = 2 (from history_)"),
    ("svm-images", {"n_iter_": True}, "n_iter_", "integer"),
    ("knn-images", {"n_features_in_": 24.0}, "n_features_in_", "integer"),
    ("knn-images", {"class_names_": ["a", "b"]}, "class_names_", "n_classes = 3"),
    ("knn-images", {"class_names_": ("a", "b", "c")}, "class_names_", "list of str"),
    ("knn-images", {"classes_": lambda a: a.astype(object)[[0, 1, 1]]}, "classes_", "sorted"),
    ("knn-images", {"classes_": np.array([0, "a", 2.5], dtype=object)}, "classes_", "sorted"),
    ("knn-images", {"classes_": np.array([[1], [2], [3]] + [None], dtype=object)[:3]},
     "classes_", "holds a list"),
]


@pytest.mark.parametrize("case, changes, attribute, cause", VIOLATIONS,
                         ids=[f"{v[2]}-{i}" for i, v in enumerate(VIOLATIONS)])
def test_each_violation_names_the_attribute(case, changes, attribute, cause):
    model, attrs = _mutated(case, **changes)
    with pytest.raises(ValueError) as info:
        validate_learned_attributes(type(model), attrs)
    message = str(info.value)
    assert message.startswith(f"{attribute}: "), message
    assert cause in message and "\n" not in message


def test_not_a_mapping():
    with pytest.raises(ValueError, match="mapping"):
        validate_learned_attributes(Softmax, [("W_", 1)])


def test_non_string_name():
    model, attrs = _mutated("knn-images")
    attrs[3] = 1
    with pytest.raises(ValueError, match="^3: not a learned attribute"):
        validate_learned_attributes(type(model), attrs)


def test_knn_k_must_fit_the_training_set():
    model, attrs = _mutated("knn-images", X_fit_=lambda a: a[:2], y_fit_=lambda a: a[:2])
    validate_learned_attributes(type(model), attrs)  # without params, k is unknown
    with pytest.raises(ValueError, match=r"^X_fit_: holds 2 training rows, fewer than k=3"):
        validate_learned_attributes(type(model), attrs, params=model.get_params())


# ------------------------------------------------------------ property test
_DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32",
           "float64", "<U3", "object"]
_ODD_VALUES = [None, 0, -1, 3, 2**70, 1.5, float("nan"), "x", [], (), [1, 2], (4, 3, 2),
               (2,), np.array(5), np.zeros(0), {}, True]


@st.composite
def mutations(draw, names):
    """One structural change to an attribute dict, as a function of the dict."""
    name = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["drop", "junk", "odd", "dtype", "shape", "value", "int",
                                 "records"]))
    if kind == "drop":
        return lambda a: a.pop(name, None)
    if kind == "junk":
        junk = draw(st.sampled_from(["templates_", "extra_", "W", 7]))
        return lambda a: a.__setitem__(junk, 1)
    if kind == "odd":
        value = draw(st.sampled_from(_ODD_VALUES))
        return lambda a: a.__setitem__(name, value)
    if kind == "int":
        delta = draw(st.sampled_from([-2, -1, 1, 5]))
        return lambda a: a.__setitem__(name, a[name] + delta) \
            if isinstance(a.get(name), int) and not isinstance(a.get(name), bool) else None
    if kind == "records":
        field = draw(st.sampled_from(["epoch", "loss", "train_acc", "val_acc", "lr", "new"]))
        value = draw(st.sampled_from([None, -1, 0.5, 2.0, float("inf"), "x", [1]]))

        def edit(a):
            if isinstance(a.get(name), list) and a[name] and isinstance(a[name][0], dict):
                a[name] = [{**a[name][0], field: value}] + a[name][1:]
        return edit
    op = kind, draw(st.sampled_from(_DTYPES)), draw(st.integers(0, 4)), \
        draw(st.sampled_from([np.nan, np.inf, -1, 0, 1e300, 255, 2**40]))

    def array_edit(a):
        v = a.get(name)
        if not isinstance(v, np.ndarray):
            return
        kind, dtype, how, x = op
        if kind == "dtype":
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    a[name] = v.astype(dtype)
            except (ValueError, TypeError, OverflowError):
                # e.g. the labels "x", "y" (or an inf put among them by an
                # earlier edit) as integers: no such array
                return
        elif kind == "shape" and v.ndim:
            a[name] = [v[:-1], v[:0], np.concatenate([v, v[:1]]), v[None], v.reshape(-1)][how]
        elif kind == "value" and v.size:
            w = v.copy()
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    w.flat[how % v.size] = x
            except (ValueError, OverflowError, TypeError):
                return  # the dtype cannot hold it: nothing to mutate
            a[name] = w
    return array_edit


def _property(case, data):
    model = FITTED[case]()
    params = model.get_params()
    attrs = learned(model)
    for edit in data.draw(st.lists(mutations(sorted(attrs)), min_size=1, max_size=3)):
        edit(attrs)
    try:
        validate_learned_attributes(type(model), attrs, params=params)
    except ValueError:
        return
    fresh = type(model)(**params)
    for k, v in attrs.items():
        setattr(fresh, k, v)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # huge but finite statistics may overflow to inf
        pred = fresh.predict(IMAGES)
    assert pred.shape == (len(IMAGES),)


@pytest.mark.parametrize("case", ["knn-images", "knn-object-labels", "svm-images",
                                  "softmax-early-stopping"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_attributes_pass_and_predict_or_raise_value_error(case, data):
    _property(case, data)
