"""LinearSVM / Softmax: learning, determinism, bad input, divergence, partial_fit, L-BFGS."""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from imgcls.errors import TrainingDivergedError
from imgcls.linear import LinearSVM, Softmax
from imgcls.linear import _kernels, base
from imgcls.linear.losses import softmax_loss, svm_loss
from imgcls.linear.preprocess import transform

ESTIMATORS = [LinearSVM, Softmax]


def blobs(n=300, d=20, c=4, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    centers = sep * rng.standard_normal((c, d))
    y = np.arange(n) % c
    X = centers[y] + rng.standard_normal((n, d))
    return X, y


def tiny_images(n=200, seed=0):
    """uint8 'images' (n, 6, 5, 1) of two classes: bright left half vs bright right half."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.integers(0, 60, (n, 6, 5, 1)).astype(np.uint8)
    X[y == 0, :, :2] += 150
    X[y == 1, :, 3:] += 150
    return X, y


def state(est):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(est).items()
            if not k.startswith("_")}


def same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_learns_blobs_and_images(cls):
    X, y = blobs()
    est = cls(random_state=0).fit(X[:200], y[:200])
    assert est.score(X[200:], y[200:]) > 0.95
    assert est.W_.shape == (4, 20) and est.b_.shape == (4,)
    assert est.decision_function(X).shape == (300, 4)
    # epochs="auto": 200 samples are one batch of 256, so the step budget asks for
    # more epochs than the cap allows
    assert len(est.history_) == est.n_iter_ == base.AUTO_MAX_EPOCHS
    h = est.history_[-1]
    assert set(h) == {"epoch", "loss", "train_acc", "val_acc", "lr"} and h["val_acc"] is None
    assert est.history_[-1]["loss"] < est.history_[0]["loss"]

    Xi, yi = tiny_images()
    est = cls(random_state=0).fit(Xi, yi)
    assert est.input_scale_ == 255.0 and est.image_shape_ == (6, 5, 1)
    np.testing.assert_allclose(est.mean_, Xi.reshape(200, -1).mean(0) / 255)
    assert est.templates_.shape == (2, 6, 5, 1)
    np.testing.assert_array_equal(est.templates_.reshape(2, -1), est.W_)
    assert est.score(Xi, yi) == 1.0
    # the class-1 template weighs the right half up, class 0's the left half
    t = est.templates_
    assert t[1, :, 3:].mean() > t[1, :, :2].mean() and t[0, :, :2].mean() > t[0, :, 3:].mean()
    # flattened input of the right width is accepted too
    np.testing.assert_array_equal(est.predict(Xi.reshape(200, -1)), est.predict(Xi))


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_every_optimizer_and_schedule_learns(cls, optimizer, schedule):
    X, y = blobs(seed=1)
    lr = 1e-2 if optimizer == "adam" else 1e-1
    est = cls(optimizer=optimizer, schedule=schedule, learning_rate=lr, step_size=2,
              random_state=0, epochs=6, batch_size=32).fit(X[:200], y[:200])
    assert est.score(X[200:], y[200:]) > 0.9
    lrs = [h["lr"] for h in est.history_]
    if schedule == "constant":
        assert lrs == [lr] * 6
    elif schedule == "step":
        assert lrs == pytest.approx([lr, lr, lr / 2, lr / 2, lr / 4, lr / 4])
    else:
        assert lrs[0] == lr and all(a > b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_same_seed_same_bits(cls):
    X, y = blobs(n=1000, d=50, c=5, seed=2)
    a = cls(random_state=7).fit(X, y)
    b = cls(random_state=7).fit(X, y)
    c = cls(random_state=8).fit(X, y)
    assert a.W_.tobytes() == b.W_.tobytes() and a.b_.tobytes() == b.b_.tobytes()
    assert a.history_ == b.history_
    assert a.W_.tobytes() != c.W_.tobytes()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_same_bits_for_any_number_of_threads(cls):
    numba = pytest.importorskip("numba")
    X, y = blobs(n=2000, d=100, c=10, seed=3)
    old = numba.get_num_threads(), _kernels._PARALLEL_MIN_WORK
    try:
        _kernels._PARALLEL_MIN_WORK = 0  # every batch through the threaded kernel
        numba.set_num_threads(1)
        one = cls(random_state=1, epochs=2).fit(X, y)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = cls(random_state=1, epochs=2).fit(X, y)
        _kernels._PARALLEL_MIN_WORK = 10**18  # and through the serial one
        serial = cls(random_state=1, epochs=2).fit(X, y)
    finally:
        numba.set_num_threads(old[0])
        _kernels._PARALLEL_MIN_WORK = old[1]
    assert one.W_.tobytes() == many.W_.tobytes() and one.history_ == many.history_
    assert serial.W_.tobytes() == many.W_.tobytes()


def test_kernel_matches_numpy_losses():
    """The fused training kernel computes the same loss and gradient as losses.py."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 33)).astype(np.float32)
    y = rng.integers(0, 6, 70)
    W = (0.3 * rng.standard_normal((6, 33))).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    rows = rng.permutation(70)[:50]
    gWp = np.empty((_kernels.N_CHUNKS, 6, 33), np.float32)
    gbp = np.empty((_kernels.N_CHUNKS, 6))
    st = np.empty((_kernels.N_CHUNKS, 2))
    gW = np.empty_like(W)
    gb = np.empty(6)
    for kind, fn, kw in [(_kernels.SVM, svm_loss, {"delta": 1.5}),
                         (_kernels.SOFTMAX, softmax_loss, {})]:
        _kernels.minibatch_grad(X, rows, y, W, b, kind, kw.get("delta", 1.0), gWp, gbp, st)
        _kernels.sum_parts(gWp, gbp, gW, gb)
        loss, dW, db = fn(W.astype(np.float64), b.astype(np.float64),
                          X[rows].astype(np.float64), y[rows], 0.0, **kw)
        assert st[:, 0].sum() / 50 == pytest.approx(loss, rel=1e-5)
        np.testing.assert_allclose(gW / 50, dW, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gb / 50, db, rtol=1e-5, atol=1e-6)
        scores = X[rows] @ W.T + b
        assert st[:, 1].sum() == np.sum(scores.argmax(1) == y[rows])
        # the threaded and the serial kernel agree bit for bit
        gWp2, gbp2, st2 = gWp.copy(), gbp.copy(), st.copy()
        _kernels._grad_parallel(X, rows, y, W, b, kind, 1.5, gWp, gbp, st)
        _kernels._grad_serial(X, rows, y, W, b, kind, 1.5, gWp2, gbp2, st2)
        assert gWp.tobytes() == gWp2.tobytes() and st.tobytes() == st2.tobytes()


def test_softmax_lbfgs_matches_logistic_regression():
    X, y = blobs(n=240, d=8, c=3, seed=3, sep=1.0)
    reg = 1e-2
    n = len(y)
    est = Softmax(optimizer="lbfgs", reg=reg, epochs=500).fit(X, y)
    Xp = transform(X, est.input_scale_, est.mean_, est.scale_, dtype=np.float64)
    ours = softmax_loss(est.W_, est.b_, Xp, y, reg)[0]
    # scikit-learn: C * sum_i loss_i + ||W||^2 / 2  ==  C * n * (mean loss + reg ||W||^2)
    # for C = 1 / (2 reg n)
    lr = LogisticRegression(C=1 / (2 * reg * n), tol=1e-12, max_iter=10_000).fit(Xp, y)
    theirs = softmax_loss(lr.coef_, lr.intercept_, Xp, y, reg)[0]
    assert abs(ours - theirs) / theirs < 1e-6
    assert est.history_[-1]["loss"] == pytest.approx(ours, rel=1e-9)
    np.testing.assert_allclose(est.W_, lr.coef_, atol=1e-4)


def test_full_batch_adam_reaches_the_optimum():
    """Full-batch minibatch training (batch_size >= n) converges to the L-BFGS optimum."""
    X, y = blobs(n=240, d=8, c=3, seed=3, sep=1.0)
    reg = 1e-2
    exact = Softmax(optimizer="lbfgs", reg=reg, epochs=500).fit(X, y)
    Xp = transform(X, exact.input_scale_, exact.mean_, exact.scale_, dtype=np.float64)
    best = softmax_loss(exact.W_, exact.b_, Xp, y, reg)[0]
    gd = Softmax(batch_size=1000, epochs=3000, learning_rate=0.05, schedule="cosine",
                 reg=reg, random_state=0).fit(X, y)
    ours = softmax_loss(gd.W_, gd.b_, Xp, y, reg)[0]
    assert (ours - best) / best < 1e-4


def test_svm_lbfgs_runs_and_warns_when_capped():
    X, y = blobs(seed=4)
    est = LinearSVM(optimizer="lbfgs", epochs=200).fit(X, y)
    assert est.score(X, y) > 0.95 and est.history_[0]["lr"] is None
    with pytest.warns(Warning, match="increase epochs"):
        Softmax(optimizer="lbfgs", epochs=2, reg=1e-6).fit(X, y)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_validation_history_and_early_stopping(cls):
    X, y = blobs(n=600, seed=5, sep=0.6)
    est = cls(random_state=0, epochs=8).fit(X[:400], y[:400], X_val=X[400:], y_val=y[400:])
    assert all(0 <= h["val_acc"] <= 1 for h in est.history_)
    es = cls(random_state=0, epochs=200, early_stopping=True, n_iter_no_change=2,
             learning_rate=1e-3, schedule="constant").fit(X, y)
    assert es.n_iter_ < 200
    accs = [h["val_acc"] for h in es.history_]
    assert all(a is not None for a in accs)
    # it stopped because the last n_iter_no_change epochs did not beat the best
    assert max(accs[-2:]) <= max(accs[:-2]) + es.tol


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_in_chunks(cls):
    X, y = blobs(n=900, seed=6)
    est = cls(random_state=0, schedule="constant")
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        est.partial_fit(X[:100], y[:100])
    assert not hasattr(est, "W_")
    for i in range(0, 600, 100):
        est.partial_fit(X[i:i + 100], y[i:i + 100], classes=np.arange(4) if i == 0 else None)
    assert len(est.history_) == 6 and [h["epoch"] for h in est.history_] == list(range(1, 7))
    assert est.score(X[600:], y[600:]) > 0.95
    # preprocessing statistics come from the first chunk only
    np.testing.assert_allclose(est.mean_, X[:100].mean(0))
    before = state(est)
    with pytest.raises(ValueError, match=r"labels \[9\] that are not among the classes"):
        est.partial_fit(X[:10], np.full(10, 9))
    with pytest.raises(ValueError, match="differ from the classes"):
        est.partial_fit(X[:10], y[:10], classes=[0, 1])
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:10, :5], y[:10])
    same_state(before, state(est))
    # chunks the same as one call per chunk of a fresh estimator: deterministic
    est2 = cls(random_state=0, schedule="constant")
    for i in range(0, 600, 100):
        est2.partial_fit(X[i:i + 100], y[i:i + 100], classes=np.arange(4))
    assert est2.W_.tobytes() == est.W_.tobytes()


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_predict_after_restoring_learned_attributes(cls):
    """What imgcls.io does: cls(**get_params()) + setattr of the learned attributes."""
    Xi, yi = tiny_images()
    est = cls(random_state=0).fit(Xi, yi)
    fresh = cls(**est.get_params())
    for k, v in vars(est).items():
        if k.endswith("_") and not k.startswith("_"):
            assert isinstance(v, (np.ndarray, int, float, str, bool, list, tuple, dict,
                                  type(None))), k
            setattr(fresh, k, v)
    np.testing.assert_array_equal(fresh.decision_function(Xi), est.decision_function(Xi))
    np.testing.assert_array_equal(fresh.templates_, est.templates_)
    fresh.partial_fit(Xi, yi)  # continues with a fresh optimiser
    assert len(fresh.history_) == est.n_iter_ + 1


def test_predict_proba():
    X, y = blobs(seed=7)
    est = Softmax(random_state=0).fit(X, y)
    p = est.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_array_equal(est.classes_[p.argmax(1)], est.predict(X))
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), p)
    assert not hasattr(LinearSVM(), "predict_proba")


def test_standardize_and_scale_options():
    X, y = blobs(seed=8)
    X = X * np.linspace(0.1, 100, 20)
    X[:, 3] = 5.0  # a constant feature
    est = Softmax(standardize=True, random_state=0).fit(X, y)
    assert est.scale_[3] == 1.0
    Xp = transform(X, est.input_scale_, est.mean_, est.scale_)
    np.testing.assert_allclose(Xp.std(0)[[0, 10, 19]], 1.0, rtol=1e-4)
    assert np.all(Xp[:, 3] == 0)
    np.testing.assert_allclose(est.templates_, est.W_ / est.scale_)
    est = Softmax(scale=10.0, center=False, random_state=0).fit(X, y)
    assert est.input_scale_ == 10.0 and np.all(est.mean_ == 0)


_FLOAT_POSITIVE = "a float in the range (0.0, inf)"
_FLOAT_NON_NEGATIVE = "a float in the range [0.0, inf)"
_COUNT = "an int in the range [1, inf)"
_SEED = ("an int in the range [0, 4294967295], an instance of 'numpy.random.mtrand.RandomState', "
         "an instance of 'numpy.random._generator.Generator' or None")
# parameter, bad value, what the one-line message says is allowed (scikit-learn's
# InvalidParameterError wording; "..." at the end stands for text that varies: the
# order of a set of strings, numpy's name for its bool type)
BAD_PARAMS = [
    ("reg", -1.0, _FLOAT_NON_NEGATIVE),
    ("reg", float("inf"), _FLOAT_NON_NEGATIVE),
    ("learning_rate", 0.0, _FLOAT_POSITIVE),
    ("learning_rate", float("nan"), _FLOAT_POSITIVE),
    ("learning_rate", float("inf"), _FLOAT_POSITIVE),
    ("batch_size", 0, _COUNT),
    ("epochs", "many", "a str among {'auto'} or " + _COUNT),
    ("epochs", 0, "a str among {'auto'} or " + _COUNT),
    ("epochs", 2.5, "a str among {'auto'} or " + _COUNT),
    ("epochs", True, "a str among {'auto'} or " + _COUNT),
    ("optimizer", "rmsprop", "a str among {..."),
    ("schedule", "linear", "a str among {..."),
    ("momentum", 1.0, "a float in the range [0.0, 1.0)"),
    ("gamma", 0.0, "a float in the range (0.0, 1.0]"),
    ("step_size", 0, _COUNT),
    ("scale", "pixels", "a str among {'auto'} or " + _FLOAT_POSITIVE),
    ("scale", -255, "a str among {'auto'} or " + _FLOAT_POSITIVE),
    ("center", 1, "an instance of 'bool' or an instance of ..."),
    ("early_stopping", "yes", "an instance of 'bool' or an instance of ..."),
    ("validation_fraction", 1.0, "a float in the range (0.0, 1.0)"),
    ("n_iter_no_change", 0, _COUNT),
    ("tol", -1e-4, _FLOAT_NON_NEGATIVE),
    ("random_state", "seed", _SEED),
    ("random_state", 2**32, _SEED),
    ("random_state", True, _SEED),
    ("verbose", -1, "an int in the range [0, inf), an instance of 'bool' or ..."),
]


def _bad_param_message(cls, name, value, allowed):
    """A regex of scikit-learn's whole message; a trailing "..." of ``allowed`` matches anything."""
    varies = allowed.endswith("...")
    head = f"The {name!r} parameter of {cls.__name__} must be {allowed.removesuffix('...')}"
    return "^" + re.escape(head) + (".*" if varies else "") + \
        re.escape(f". Got {value!r} instead.") + "$"


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("name, value, allowed", BAD_PARAMS)
def test_bad_params(cls, name, value, allowed):
    X, y = blobs(n=40)
    est = cls(**{name: value})
    with pytest.raises(InvalidParameterError, match=_bad_param_message(cls, name, value, allowed)):
        est.fit(X, y)
    assert not hasattr(est, "W_") and not hasattr(est, "n_features_in_")
    # the same check on partial_fit, and after set_params on a fitted model
    with pytest.raises(InvalidParameterError, match=f"The {name!r} parameter"):
        cls(**{name: value}).partial_fit(X, y, classes=[0, 1, 2, 3])
    fitted = cls(random_state=0, epochs=1).fit(X, y)
    before = fitted.W_.copy()
    with pytest.raises(InvalidParameterError, match=f"The {name!r} parameter"):
        fitted.set_params(**{name: value}).fit(X, y)
    np.testing.assert_array_equal(fitted.W_, before)


def test_bad_delta():
    X, y = blobs(n=40)
    for delta in (0, -1.0, float("inf"), "1"):
        with pytest.raises(InvalidParameterError,
                           match=_bad_param_message(LinearSVM, "delta", delta, _FLOAT_POSITIVE)):
            LinearSVM(delta=delta).fit(X, y)


def test_invalid_parameter_error_is_value_and_type_error():
    """What callers catch: scikit-learn's error is both (its documented contract)."""
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_parameter_has_a_constraint_that_fit_and_partial_fit_enforce(cls):
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation(cls.__name__, cls(random_state=0, epochs=1))


def test_partial_fit_refuses_lbfgs():
    """The rule between a parameter and a method, which constraints cannot state."""
    X, y = blobs(n=40)
    with pytest.raises(ValueError, match="partial_fit needs a minibatch optimizer"):
        Softmax(optimizer="lbfgs").partial_fit(X, y, classes=[0, 1, 2, 3])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bad_data_leaves_fitted_estimator_unchanged(cls):
    X, y = blobs(n=120)
    est = cls(random_state=0).fit(X, y)
    before = state(est)
    Xnan = X.copy()
    Xnan[3, 2] = np.nan
    Xinf = X.copy()
    Xinf[0, 0] = np.inf
    cases = [
        ((Xnan, y), "NaN"),
        ((Xinf, y), "infinity"),
        ((X, np.zeros(120)), "only one class"),
        ((X, y[:-1]), "inconsistent numbers of samples"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            est.fit(*args)
        same_state(before, state(est))
    with pytest.raises(ValueError, match="too large for float32 after preprocessing"):
        est.fit(np.where(X > 0, 1e300, -1e300), y)
    same_state(before, state(est))
    with pytest.raises(ValueError, match="X_val and y_val must be given together"):
        est.fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="X_val: Input X contains NaN"):
        est.fit(X, y, X_val=Xnan, y_val=y)
    with pytest.raises(ValueError, match="X_val: X has 19 features"):
        est.fit(X, y, X_val=X[:, :-1], y_val=y)
    with pytest.raises(ValueError, match="y_val contains labels"):
        est.fit(X, y, X_val=X, y_val=y + 10)
    with pytest.raises(ValueError, match="X has 19 features, but .* is expecting 20"):
        est.predict(X[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        est.predict(Xnan)
    same_state(before, state(est))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_not_fitted(cls):
    with pytest.raises(NotFittedError):
        cls().predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        cls().templates_


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_divergence_raises_and_keeps_the_old_model(cls):
    X, y = blobs(n=400, seed=9)
    X = X * 1e6
    est = cls(random_state=0, center=False).fit(X / 1e6, y)
    before = state(est)
    bad = est.set_params(optimizer="sgd", learning_rate=1e6, reg=10.0, schedule="constant",
                         epochs=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings leak out either
        with pytest.raises(TrainingDivergedError,
                           match=r"diverged .* at epoch \d+; try a smaller learning_rate"):
            bad.fit(X, y)
    same_state({**before, **bad.get_params()}, state(est))
    assert np.all(np.isfinite(est.W_))
    # a fresh estimator stays unfitted
    fresh = cls(optimizer="sgd", learning_rate=1e6, reg=10.0, schedule="constant", epochs=50)
    with pytest.raises(TrainingDivergedError):
        fresh.fit(X, y)
    assert not hasattr(fresh, "W_")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_model_file_round_trip(cls, tmp_path):
    """imgcls.io saves and loads the linear models; predictions are identical afterwards."""
    io = pytest.importorskip("imgcls.io")
    Xi, yi = tiny_images()
    est = cls(random_state=0, early_stopping=True, epochs=4).fit(Xi, np.array(["L", "R"])[yi])
    path = io.save(est, tmp_path / "model.safetensors")
    back = io.load(path)
    assert type(back) is cls and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(Xi), est.predict(Xi))
    np.testing.assert_array_equal(back.class_scores(Xi), est.class_scores(Xi))
    assert back.history_ == est.history_ and back.image_shape_ == (6, 5, 1)
    np.testing.assert_array_equal(back.templates_, est.templates_)
