"""The trainer apart from the estimators: config, divergence, memory, defaults that converge."""

import math
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from imgcls.config import config_context
from imgcls.errors import TrainingDivergedError
from imgcls.linear import LinearSVM, Softmax
from imgcls.linear import base
from imgcls.linear.losses import softmax_loss, svm_loss
from imgcls.linear.optim import make_optimizer
from imgcls.linear.preprocess import fit_preprocessing, transform
from imgcls.linear.trainer import DIVERGENCE_FACTOR, TrainConfig, train

from peak_memory import traced_peak

ESTIMATORS = [Softmax, LinearSVM]


def blobs(n=300, d=20, c=4, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    centers = sep * rng.standard_normal((c, d))
    y = np.arange(n) % c
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


# ------------------------------------------------------------------- config
GOOD = dict(loss="softmax", learning_rate=0.1, reg=1e-4, epochs=3, batch_size=32)


@pytest.mark.parametrize("field, value", [
    ("loss", "hinge"), ("learning_rate", 0.0), ("learning_rate", math.nan),
    ("learning_rate", True), ("reg", -1.0), ("reg", math.inf), ("epochs", 0),
    ("epochs", 2.5), ("epochs", True), ("batch_size", 0), ("schedule", "linear"),
    ("step_size", 0), ("gamma", 0.0), ("gamma", 1.5), ("delta", 0.0),
    ("n_iter_no_change", 0), ("tol", -1.0), ("early_stopping", 1), ("verbose", "yes"),
])
def test_config_refuses_bad_fields_naming_them(field, value):
    with pytest.raises(ValueError, match=rf"^TrainConfig\.{field} must be "):
        TrainConfig(**{**GOOD, field: value})


def test_config_is_frozen_and_knows_the_zero_model_loss():
    cfg = TrainConfig(**GOOD)
    with pytest.raises(AttributeError):
        cfg.epochs = 4
    assert cfg.zero_model_loss(10) == pytest.approx(math.log(10))
    assert TrainConfig(**{**GOOD, "loss": "svm", "delta": 2.0}).zero_model_loss(5) == 8.0
    # the zero model's loss really is that: the losses at W = 0, b = 0
    X, y = blobs(n=50, c=5)
    assert softmax_loss(np.zeros((5, 20)), np.zeros(5), X, y, 0.0)[0] == \
        pytest.approx(math.log(5))
    assert svm_loss(np.zeros((5, 20)), np.zeros(5), X, y, 0.0, delta=2.0)[0] == \
        pytest.approx(8.0)


# ------------------------------------------------------- against a plain loop
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_trainer_equals_a_plain_numpy_loop(loss):
    """SGD with a constant rate: the fused kernel loop against the NumPy losses."""
    X, y = blobs(n=200)
    stats = fit_preprocessing(X)
    cfg = TrainConfig(loss=loss, learning_rate=0.05, reg=1e-3, epochs=3, batch_size=48,
                      schedule="constant")
    W = np.zeros((4, 20), np.float32)
    b = np.zeros(4, np.float32)
    history = train(X, y, W, b, cfg, stats=stats, optimizer=make_optimizer("sgd"),
                    rng=np.random.default_rng(7))
    # the reference: the same permutations, the loss functions of losses.py in float64
    Xp = transform(X, *stats, dtype=np.float64)
    loss_fn = softmax_loss if loss == "softmax" else svm_loss
    Wr, br = np.zeros((4, 20)), np.zeros(4)
    rng = np.random.default_rng(7)
    for epoch in range(3):
        perm = rng.permutation(200)
        total = 0.0
        for k in range(0, 200, 48):
            rows = perm[k:k + 48]
            value, dW, db = loss_fn(Wr, br, Xp[rows], y[rows], 1e-3)
            total += value * len(rows)
            Wr -= 0.05 * dW
            br -= 0.05 * db
        assert history[epoch]["loss"] == pytest.approx(total / 200, rel=1e-4)
    np.testing.assert_allclose(W, Wr, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(b, br, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------- divergence
@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_divergence_raises_for_every_minibatch_optimizer(cls, optimizer):
    X, y = blobs()
    est = cls(optimizer=optimizer, learning_rate=1e8, epochs=3, random_state=0)
    with pytest.raises(TrainingDivergedError,
                       match=r"diverged \(.*\) at epoch 1; try a smaller learning_rate "
                             r"\(now 1e\+08\)"):
        est.fit(X, y)
    assert not hasattr(est, "W_")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_adam_growth_far_beyond_the_start_raises(cls):
    """Adam's steps are bounded by the rate, so its loss grows finite: the factor catches it."""
    X, y = blobs()
    with pytest.raises(TrainingDivergedError, match=rf"grew to a mean of .*, over "
                                                    rf"{DIVERGENCE_FACTOR:g} x the"):
        cls(optimizer="adam", learning_rate=1e8, epochs=3, random_state=0).fit(X, y)
    # a rate that converges stays far below the bound, in every epoch
    est = cls(optimizer="adam", learning_rate=0.1, epochs=10, random_state=0).fit(X, y)
    bound = DIVERGENCE_FACTOR * TrainConfig(**{**GOOD, "loss": cls._loss}).zero_model_loss(4)
    assert max(h["loss"] for h in est.history_) < bound / 100


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_divergence_raises_for_lbfgs(cls):
    X, y = blobs(n=60)
    huge = X.astype(np.float64) * 1e300  # scores beyond the float64 range
    with pytest.raises(TrainingDivergedError, match=r"L-BFGS.*(scale|standardize)"):
        cls(optimizer="lbfgs", epochs=50, center=False).fit(huge, y)


def test_partial_fit_divergence_keeps_the_model():
    X, y = blobs()
    est = Softmax(optimizer="adam", learning_rate=0.01, random_state=0)
    est.partial_fit(X, y, classes=np.arange(4))
    W = est.W_.copy()
    est.set_params(learning_rate=1e8)
    with pytest.raises(TrainingDivergedError):
        est.partial_fit(X, y)
    np.testing.assert_array_equal(est.W_, W)
    assert est.n_iter_ == 1


# ------------------------------------------------------------ bounded memory
@pytest.mark.parametrize("params", [
    dict(epochs=3),
    dict(epochs=4, optimizer="momentum", learning_rate=0.05, schedule="step", step_size=2),
    dict(epochs=6, early_stopping=True, n_iter_no_change=2),
])
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_gathered_batches_give_the_same_bits_as_the_resident_matrix(cls, params):
    X, y = blobs(n=500, d=30)
    X = (X * 10).astype(np.float64)  # a dtype other than the kernel's
    resident = cls(random_state=2, **params).fit(X, y, X_val=X[:50], y_val=y[:50]) \
        if not params.get("early_stopping") else cls(random_state=2, **params).fit(X, y)
    with config_context(working_memory=0.01):  # 10 KiB: every batch gathered
        gathered = cls(random_state=2, **params)
        if params.get("early_stopping"):
            gathered.fit(X, y)
        else:
            gathered.fit(X, y, X_val=X[:50], y_val=y[:50])
    np.testing.assert_array_equal(gathered.W_, resident.W_)
    np.testing.assert_array_equal(gathered.b_, resident.b_)
    assert gathered.history_ == resident.history_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # capped L-BFGS
def test_feature_scale_training_holds_no_copy_of_x():
    """float32 features larger than working_memory: X plus O(batch x features), no copy."""
    rng = np.random.default_rng(0)
    n, d = 6000, 800  # 19 MB of float32
    X = rng.standard_normal((n, d), dtype=np.float32)
    np.maximum(X, 0, out=X)
    y = (X[:, :10].argmax(axis=1) % 5).astype(np.int64)
    # compiled kernels loaded (and their allocations made) outside the measurement
    Softmax(epochs=1).fit(X[:300, :8], y[:300])
    LinearSVM(optimizer="lbfgs", epochs=1).fit(X[:300, :8], y[:300])
    with config_context(working_memory=4):
        with traced_peak() as peak:
            est = Softmax(epochs=2, random_state=0).fit(X, y)
        # a float32 copy of X would be X.nbytes; a float64 one twice that
        assert peak.bytes < 0.2 * X.nbytes, peak.bytes
        assert est.score(X, y) > 0.6
        with traced_peak() as peak:
            LinearSVM(optimizer="lbfgs", epochs=3).fit(X[:3000], y[:3000])
        # L-BFGS works in float64 blocks: one block buffer of working_memory (4 MiB) and
        # the gathered float32 rows that fill it, where a float64 copy of X[:3000] is 19 MB
        assert peak.bytes < 2 * 4 * 2**20, peak.bytes


def test_validation_rows_and_scoring_share_working_memory():
    """Training and validation rows together, and class_scores' blocks, stay within the budget."""
    from imgcls._validation import FINITE_BLOCK_BYTES

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 2000)).astype(np.float32)  # 24 MB
    y = (X[:, :10].argmax(axis=1) % 5).astype(np.int64)
    Xv, yv = X[1000:] + 0.1, y[1000:]  # 16 MB of float32 rows
    Softmax(epochs=1).fit(X[:300, :8], y[:300], X_val=Xv[:50, :8], y_val=yv[:50])
    budget = 16 * 2**20
    with config_context(working_memory=16):
        with traced_peak() as peak:
            est = Softmax(epochs=2, random_state=0).fit(X[:1500], y[:1500], X_val=Xv, y_val=yv)
        # the training rows (12 MB) are made once and the validation rows get what is
        # left (4.8 MB: a batch buffer); a copy of both would be 28 MB.  Beside them:
        # the finite check's buffer and the batch buffers
        assert peak.bytes < budget + FINITE_BLOCK_BYTES + 2 * 2**20, peak.bytes
        with traced_peak() as peak:
            est.class_scores(X)
        # float64 blocks of at most the budget, one at a time (the output is 0.1 MB)
        assert peak.bytes < budget + 2**19, peak.bytes


def test_float64_values_beyond_float32_are_refused_when_gathered():
    X, y = blobs(n=100)
    X = X.astype(np.float64)
    X[57, 3] = 1e39
    with config_context(working_memory=0.001):
        with pytest.raises(ValueError, match="too large for float32"):
            Softmax(epochs=1, center=False).fit(X, y)


# ---------------------------------------------------------------- defaults
def test_auto_epochs_is_a_step_budget():
    assert base.auto_epochs(60_000, 256) == base.AUTO_MIN_EPOCHS  # MNIST: unchanged
    assert base.auto_epochs(1437, 256) == -(-base.AUTO_MIN_STEPS // 6)  # digits: 84
    assert base.auto_epochs(50, 256) == base.AUTO_MAX_EPOCHS
    est = Softmax(random_state=0).fit(*blobs(n=1000))
    assert est.n_iter_ == base.auto_epochs(1000, 256)
    assert Softmax(optimizer="lbfgs")._train_config(100).epochs == base.AUTO_LBFGS_ITERATIONS
    assert Softmax()._train_config(None).epochs == base.AUTO_MIN_EPOCHS  # partial_fit


@pytest.mark.parametrize("cls, reference", [(Softmax, "LogisticRegression"),
                                            (LinearSVM, "LinearSVC")])
def test_defaults_converge_on_digits(cls, reference):
    """5-fold CV on scikit-learn's digits: within 1 point of scikit-learn's defaults."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    X, y = load_digits(return_X_y=True)
    ref = {"LogisticRegression": LogisticRegression, "LinearSVC": LinearSVC}[reference]()
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # their ConvergenceWarning at default max_iter
        theirs = cross_val_score(ref, X, y, cv=5).mean()
        ours = cross_val_score(cls(random_state=0), X, y, cv=5).mean()
    assert ours >= theirs - 0.01, (ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_lbfgs_folded_objective_equals_the_exact_one(dtype, loss):
    """Data beyond working_memory: raw rows times folded weights == preprocessed rows times weights."""
    from imgcls.linear.lbfgs import _Objective

    rng = np.random.default_rng(5)
    X = (rng.random((900, 40)) * 200 + 20).astype(dtype)
    y = rng.integers(0, 4, 900)
    rows = np.sort(rng.choice(900, 700, replace=False))
    stats = fit_preprocessing(X, standardize=True, rows=rows)
    config = TrainConfig(loss=loss, learning_rate=0.1, reg=1e-3, epochs=5, batch_size=64)
    theta = rng.standard_normal(4 * 40 + 4) * 0.1
    exact = _Objective(X, y, rows, stats, 4, config)
    with config_context(working_memory=0.02):  # 20 kB: blocks of ~120 rows
        folded = _Objective(X, y, rows, stats, 4, config)
    assert exact.exact and not folded.exact and folded.block_rows < 700
    (l1, g1), (l2, g2) = exact(theta), folded(theta)
    tol = 1e-5 if dtype != np.float64 else 1e-10  # float32 products, or float64 ones
    assert abs(l1 - l2) <= tol * abs(l1)
    np.testing.assert_allclose(g2, g1, rtol=0, atol=tol * np.abs(g1).max())
    assert folded.accuracy(theta) == exact.accuracy(theta)
