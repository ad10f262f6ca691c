"""The estimator: agreement with scikit-learn, images, LOO, check_estimator, bad input."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_estimator, check_param_validation

import imgcls
from imgcls.neighbors import KNearestNeighbor, NearestNeighbor
from imgcls.neighbors.reference import reference_kneighbors
from imgcls.neighbors.vote import vote_rank, vote_scores

from .conftest import tie_data

SK_METRIC = {"l1": dict(p=1), "l2": dict(p=2), "cosine": dict(metric="cosine")}


def _blobs(rng, n=200, d=12, n_classes=4, dtype=np.float64):
    centers = rng.normal(scale=4, size=(n_classes, d))
    y = rng.integers(0, n_classes, n)
    X = centers[y] + rng.normal(size=(n, d))
    return X.astype(dtype), y


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("k", [1, 4, 7])
def test_predictions_equal_sklearn_where_no_vote_tie(metric, weights, k, rng):
    X, y = _blobs(rng)
    Q, _ = _blobs(rng, n=80)
    ours = KNearestNeighbor(k=k, metric=metric, weights=weights).fit(X, y)
    sk = KNeighborsClassifier(n_neighbors=k, weights=weights, algorithm="brute",
                              **SK_METRIC[metric]).fit(X, y)
    proba = ours.predict_proba(Q)
    np.testing.assert_allclose(proba, sk.predict_proba(Q), atol=1e-9)
    top2 = np.sort(proba, axis=1)[:, -2:]
    no_tie = top2[:, 1] - top2[:, 0] > 1e-9
    assert no_tie.sum() > 40
    np.testing.assert_array_equal(ours.predict(Q)[no_tie], sk.predict(Q)[no_tie])
    d, i = ours.kneighbors(Q)
    sd, si = sk.kneighbors(Q)
    np.testing.assert_array_equal(i, si)
    np.testing.assert_allclose(d, sd, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("weights", ["uniform", "distance", "softmax"])
def test_predict_is_vote_rank_of_kneighbors(weights):
    Q, X = tie_data(np.uint8)
    y = np.array(list("abc"))[np.arange(len(X)) % 3]
    est = KNearestNeighbor(k=5, metric="l2", weights=weights, temperature=0.5).fit(X, y)
    d, i = est.kneighbors(Q)
    rd, ri = reference_kneighbors(Q, X, 5, "l2")
    np.testing.assert_array_equal(i, ri)
    ranked = vote_rank(vote_scores(est.y_fit_[i], d, 3, weights, 0.5, "l2"), est.y_fit_[i])
    np.testing.assert_array_equal(est.predict(Q), est.classes_[ranked[:, 0]])
    top = est.predict_topk(Q, n=3)
    assert top.shape == (len(Q), 3)
    np.testing.assert_array_equal(top[:, 0], est.predict(Q))
    np.testing.assert_array_equal(np.sort(top, axis=1), np.tile(np.array(list("abc")), (len(Q), 1)))
    p = est.predict_proba(Q)
    np.testing.assert_allclose(p.sum(axis=1), 1)
    assert est.score(Q, est.predict(Q)) == 1.0


def test_images_uint8_kept_and_flattened(rng):
    X = rng.integers(0, 256, (50, 6, 5, 3)).astype(np.uint8)
    y = rng.integers(0, 3, 50)
    est = KNearestNeighbor(k=3).fit(X, y)
    assert est.X_fit_.dtype == np.uint8 and est.X_fit_.shape == (50, 90)
    assert est.image_shape_ == (6, 5, 3) and est.n_features_in_ == 90
    np.testing.assert_array_equal(est.predict(X), est.predict(X.reshape(50, -1)))
    _, i = est.kneighbors(X[:4])
    np.testing.assert_array_equal(i[:, 0], np.arange(4))


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
def test_float16_and_uint8_rows_are_kept_as_given_and_searched_as_their_values(metric, rng):
    X = rng.normal(size=(90, 6)).astype(np.float16)
    y = rng.integers(0, 3, 90)
    Q = rng.normal(size=(12, 6))
    est = KNearestNeighbor(k=4, metric=metric).fit(X, y)
    assert est.X_fit_ is X  # no copy, dtype kept
    ref = KNearestNeighbor(k=4, metric=metric).fit(X.astype(np.float64), y)
    d, i = est.kneighbors(Q)
    rd, ri = ref.kneighbors(Q)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(d, rd, rtol=1e-12)
    np.testing.assert_array_equal(est.predict(Q), ref.predict(Q))
    X8 = rng.integers(0, 256, (40, 5)).astype(np.uint8)
    assert KNearestNeighbor(metric=metric).fit(X8, y[:40]).X_fit_ is X8


def test_leave_one_out_matches_sklearn(rng):
    X, y = _blobs(rng, n=120)
    ours = KNearestNeighbor(k=3, metric="l2").fit(X, y)
    sk = KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(X, y)
    d, i = ours.kneighbors()
    sd, si = sk.kneighbors()
    np.testing.assert_array_equal(i, si)
    np.testing.assert_allclose(d, sd, rtol=1e-9)
    assert ours.kneighbors(n_neighbors=2, return_distance=False).shape == (120, 2)


def test_nearest_neighbor_is_k1_l1(rng):
    X, y = _blobs(rng, dtype=np.float32)
    nn = NearestNeighbor().fit(X, y)
    knn = KNearestNeighbor(k=1, metric="l1").fit(X, y)
    np.testing.assert_array_equal(nn.predict(X[:30] + 0.5), knn.predict(X[:30] + 0.5))
    assert set(nn.get_params()) == {"working_memory", "n_jobs"}
    assert imgcls.NearestNeighbor is NearestNeighbor and imgcls.KNearestNeighbor is KNearestNeighbor


def test_learned_attributes_are_arrays_or_json_and_can_be_set_by_hand(rng):
    X, y = _blobs(rng)
    est = KNearestNeighbor(k=3, metric="cosine", weights="softmax").fit(X, y)
    learned = {a: getattr(est, a) for a in vars(est) if a.endswith("_") and not a.startswith("_")}
    assert set(learned) >= {"X_fit_", "y_fit_", "classes_", "n_features_in_", "image_shape_"}
    for v in learned.values():
        assert isinstance(v, (np.ndarray, int, float, str, bool, tuple, list, dict, type(None)))
    clone = KNearestNeighbor(**est.get_params())
    for a, v in learned.items():
        setattr(clone, a, v)
    np.testing.assert_array_equal(clone.predict(X[:20]), est.predict(X[:20]))


def test_working_memory_param_and_tiny_global_budget_change_nothing(rng):
    X, y = _blobs(rng)
    ref = KNearestNeighbor(k=5, metric="l2").fit(X, y).kneighbors(X[:30])
    tiny = KNearestNeighbor(k=5, metric="l2", working_memory=1e-5).fit(X, y).kneighbors(X[:30])
    with imgcls.config_context(working_memory=1e-5):
        glob = KNearestNeighbor(k=5, metric="l2").fit(X, y).kneighbors(X[:30])
    for got in (tiny, glob):
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_allclose(got[0], ref[0])


def test_check_estimator():
    # NearestNeighbor covers the L1 path; the other the L2 path and distance votes
    for est in (KNearestNeighbor(k=3, metric="l2", weights="distance"), NearestNeighbor()):
        check_estimator(est)


# ------------------------------------------------------------ bad input ---
def _fitted():
    Q, X = tie_data(np.uint8)
    return KNearestNeighbor(k=2).fit(X, np.arange(len(X)) % 3), X


def _state(est):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(est).items()}


def _assert_same_state(est, before):
    after = vars(est)
    assert set(after) == set(before)
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(after[k], v)
        else:
            assert after[k] == v


_NOT_ORDERED = r" \{.*\}"  # scikit-learn prints a set of options in no fixed order


@pytest.mark.parametrize("params, msg", [
    (dict(k=0), r"^The 'k' parameter of KNearestNeighbor must be an int in the range "
                r"\[1, inf\)\. Got 0 instead\.$"),
    (dict(k=2.5), r"'k' parameter .* Got 2\.5 instead"),
    (dict(k=True), r"'k' parameter .* Got True instead"),
    (dict(k=61), r"k=61 is larger than the training set \(60 samples\)"),
    (dict(metric="euclid"), r"^The 'metric' parameter of KNearestNeighbor must be a str among"
                            + _NOT_ORDERED + r"\. Got 'euclid' instead\.$"),
    (dict(weights="gauss"), r"'weights' parameter .* must be a str among" + _NOT_ORDERED),
    (dict(temperature=0.0), r"'temperature' parameter .* must be a float in the range "
                            r"\(0\.0, inf\)\. Got 0\.0"),
    (dict(temperature=-1.0), r"'temperature' parameter .* Got -1\.0"),
    (dict(weights="softmax", temperature=float("nan")), r"'temperature' parameter .* Got nan"),
    (dict(temperature=float("inf")), r"'temperature' parameter .* Got inf"),
    (dict(working_memory=0), r"'working_memory' parameter .* must be a float in the range "
                             r"\(0\.0, 1073741824\.0\] or None\. Got 0 instead"),
    # a finite value whose byte count is infinite must be refused up front, not as a
    # bare float error deep in the search
    (dict(working_memory=1e308), r"'working_memory' parameter .* Got 1e\+308 instead"),
    (dict(n_jobs=0), r"'n_jobs' parameter .* must be an int in the range \(-inf, -1\], an int "
                     r"in the range \[1, inf\) or None\. Got 0 instead"),
    (dict(n_jobs=1.5), r"'n_jobs' parameter .* Got 1\.5 instead"),
])
def test_bad_params_raise_and_leave_estimator_unchanged(params, msg):
    est, X = _fitted()
    before = _state(est)
    est.set_params(**params)
    with pytest.raises(ValueError, match=msg) as info:
        est.fit(X, np.arange(len(X)) % 2)
    if "larger" not in msg:  # the one data-dependent rule is a plain ValueError
        assert isinstance(info.value, InvalidParameterError)
        # searching with parameters changed after fit is refused the same way
        with pytest.raises(InvalidParameterError, match=msg):
            est.predict(X[:3])
    est.set_params(**{k: before[k] for k in params})
    _assert_same_state(est, before)


@pytest.mark.parametrize("cls", [KNearestNeighbor, NearestNeighbor])
def test_every_parameter_has_a_constraint_that_fit_enforces(cls):
    check_param_validation(cls.__name__, cls())


@pytest.mark.parametrize("make, msg", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X.astype(float)), y), "NaN"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X.astype(float)), y), "infinity"),
    (lambda X, y: (X[:0], y[:0]), "0 sample"),
    (lambda X, y: (X, np.linspace(0, 1, len(y))), "Unknown label type"),
    (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
])
def test_bad_training_data_raise_and_leave_estimator_unchanged(make, msg):
    est, X = _fitted()
    before = _state(est)
    Xb, yb = make(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match=msg):
        est.fit(Xb, yb)
    _assert_same_state(est, before)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "kneighbors", "predict_topk"])
def test_bad_queries(method):
    est, X = _fitted()
    before = _state(est)
    call = getattr(est, method)
    with pytest.raises(ValueError, match="X has 3 features, but KNearestNeighbor is expecting 7"):
        call(X[:, :3])
    Xn = X[:4].astype(float)
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        call(Xn)
    with pytest.raises(ValueError, match="0 sample"):
        call(X[:0])
    _assert_same_state(est, before)


def test_bad_neighbour_counts():
    est, X = _fitted()
    with pytest.raises(ValueError, match=r"k=61 is larger than the training set"):
        est.kneighbors(X, n_neighbors=61)
    with pytest.raises(ValueError, match=r"k=60 is larger than the training set minus the left-out"):
        est.kneighbors(n_neighbors=60)
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 1"):
        est.kneighbors(X, n_neighbors=0)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1"):
        est.predict_topk(X, n=0)
    assert est.predict_topk(X, n=5).shape == (len(X), 3)  # only 3 classes


@pytest.mark.parametrize("method", ["predict", "predict_proba", "kneighbors", "predict_topk", "score"])
def test_not_fitted(method):
    args = (np.zeros((2, 3)), [0, 1]) if method == "score" else (np.zeros((2, 3)),)
    with pytest.raises(NotFittedError):
        getattr(KNearestNeighbor(), method)(*args)


def test_mnist_first_thousand_if_present():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
    if not root.is_dir():
        pytest.skip(f"MNIST not found at {root}")
    try:
        data = imgcls.load_dataset("mnist", root=root)
    except (ImportError, AttributeError, NotImplementedError) as exc:
        pytest.skip(f"the MNIST loader is not available yet: {exc}")
    Xtr, ytr = data.X_train[:3000], data.y_train[:3000]
    Xte = data.X_test[:200]
    for metric in ("l1", "l2"):
        est = KNearestNeighbor(k=3, metric=metric).fit(Xtr, ytr)
        d, i = est.kneighbors(Xte)
        rd, ri = reference_kneighbors(Xte.reshape(200, -1)[:20], Xtr.reshape(3000, -1), 3, metric)
        np.testing.assert_array_equal(i[:20], ri)
        np.testing.assert_allclose(d[:20], rd)
        assert est.score(Xte, data.y_test[:200]) > 0.8
