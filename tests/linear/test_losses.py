"""Vectorised losses vs the loop references, and analytic vs numeric gradients."""

import numpy as np
import pytest

from imgcls.linear.losses import (get_loss, softmax_from_scores, softmax_loss, softmax_proba,
                                  svm_from_scores, svm_loss)
from imgcls.linear.reference import numeric_gradient, softmax_loss_naive, svm_loss_naive


def rel_error(a, n):
    """Relative error of a gradient: ||a - n|| / (||a|| + ||n||) over the whole array.

    Norm-wise rather than elementwise: an entry of size 1e-5 has an absolute
    rounding error of ~1e-11 in a centred difference (eps * |loss| / h), which is
    no defect of the analytic gradient; ``elementwise_error`` below checks the
    entries that are large enough for the elementwise ratio to mean something.
    """
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(1e-12, np.linalg.norm(a) + np.linalg.norm(n)))


def elementwise_error(a, n, floor=1e-3):
    """The course's elementwise max |a - n| / (|a| + |n|), over entries above ``floor``."""
    big = np.abs(n) > floor
    return float(np.max(np.abs(a - n)[big] / (np.abs(a) + np.abs(n))[big]))


def problem(seed, n=30, d=12, c=5, w_scale=0.5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class present
    W = w_scale * rng.standard_normal((c, d))
    b = rng.standard_normal(c)
    return W, b, X, y


def away_from_kinks(seed, delta=1.0, gap=1e-3):
    """An SVM problem where no margin s_j - s_y + delta is within ``gap`` of 0."""
    for s in range(seed, seed + 1000):
        W, b, X, y = problem(s)
        scores = X @ W.T + b
        m = scores - scores[np.arange(len(y)), y][:, None] + delta
        m[np.arange(len(y)), y] = 10.0
        if np.min(np.abs(m)) > gap and np.any(m > 0) and np.any(m[m < 10] < 0):
            return W, b, X, y
    raise AssertionError("no kink-free problem found")


@pytest.mark.parametrize("reg", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_gradient_check(reg, seed):
    W, b, X, y = problem(seed)
    loss, dW, db = softmax_loss(W, b, X, y, reg)
    num_dW = numeric_gradient(lambda: softmax_loss(W, b, X, y, reg)[0], W)
    num_db = numeric_gradient(lambda: softmax_loss(W, b, X, y, reg)[0], b)
    assert rel_error(dW, num_dW) < 1e-7
    assert rel_error(db, num_db) < 1e-7
    assert elementwise_error(dW, num_dW) < 1e-7
    # the analytic gradient is not trivially zero (a check that could not fail otherwise)
    assert np.abs(dW).max() > 1e-3


@pytest.mark.parametrize("reg", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 10, 20])
def test_svm_gradient_check_away_from_kinks(reg, seed):
    W, b, X, y = away_from_kinks(seed)
    loss, dW, db = svm_loss(W, b, X, y, reg)
    num_dW = numeric_gradient(lambda: svm_loss(W, b, X, y, reg)[0], W)
    num_db = numeric_gradient(lambda: svm_loss(W, b, X, y, reg)[0], b)
    # the hinge is piecewise linear: away from kinks the centred difference is exact
    # up to rounding, so the same bound as softmax holds
    assert rel_error(dW, num_dW) < 1e-7
    assert rel_error(db, num_db) < 1e-7
    assert elementwise_error(dW, num_dW) < 1e-7
    assert np.abs(dW).max() > 1e-3


def test_gradient_check_detects_a_wrong_gradient():
    """The checking machinery itself can fail: a gradient off by the reg term is caught."""
    W, b, X, y = problem(3)
    _, dW, _ = softmax_loss(W, b, X, y, 0.0)
    num = numeric_gradient(lambda: softmax_loss(W, b, X, y, 0.1)[0], W)
    assert rel_error(dW, num) > 1e-3


@pytest.mark.parametrize("reg", [0.0, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_equals_loops(reg, seed):
    W, b, X, y = problem(seed, n=40, d=9, c=4)
    for fast, slow in [(softmax_loss, softmax_loss_naive), (svm_loss, svm_loss_naive)]:
        lf, dWf, dbf = fast(W, b, X, y, reg)
        ls, dWs, dbs = slow(W, b, X, y, reg)
        np.testing.assert_allclose(lf, ls, rtol=1e-12)
        np.testing.assert_allclose(dWf, dWs, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(dbf, dbs, rtol=1e-10, atol=1e-13)


def test_svm_delta_and_known_value():
    # the lecture's worked example: scores (cat 3.2, car 5.1, frog -1.7), true class cat
    scores = np.array([[3.2, 5.1, -1.7]])
    loss, ds = svm_from_scores(scores, np.array([0]))
    assert loss == pytest.approx(2.9)
    np.testing.assert_allclose(ds, [[-1.0, 1.0, 0.0]])
    loss2, _ = svm_from_scores(scores, np.array([0]), delta=2.0)
    assert loss2 == pytest.approx(3.9)  # frog: -1.7 - 3.2 + 2 < 0


def test_softmax_known_value_and_stability():
    scores = np.array([[3.2, 5.1, -1.7]])
    loss, _ = softmax_from_scores(scores, np.array([0]))
    p = np.exp(scores) / np.exp(scores).sum()
    assert loss == pytest.approx(-np.log(p[0, 0]))
    # huge finite scores: no overflow, no NaN, exact limit values
    big = np.array([[1e308, -1e308, 0.0], [1000.0, 1000.0, 1000.0]])
    loss, ds = softmax_from_scores(big, np.array([0, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(ds))
    assert loss == pytest.approx(np.log(3) / 2)
    big32 = np.array([[3e38, -3e38, 0.0]], dtype=np.float32)
    loss, ds = softmax_from_scores(big32, np.array([1]))
    assert np.isfinite(loss) and ds.dtype == np.float32
    p = softmax_proba(big)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(np.isfinite(p))


def test_float32_dtype_is_kept():
    W, b, X, y = problem(0)
    loss, dW, db = softmax_loss(W.astype(np.float32), b.astype(np.float32),
                                X.astype(np.float32), y, 0.1)
    assert dW.dtype == np.float32 and db.dtype == np.float32
    loss64, dW64, _ = softmax_loss(W, b, X, y, 0.1)
    np.testing.assert_allclose(loss, loss64, rtol=1e-5)
    np.testing.assert_allclose(dW, dW64, rtol=1e-4, atol=1e-6)


def test_bad_inputs():
    W, b, X, y = problem(0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")
    assert get_loss("svm") is svm_loss
    with pytest.raises(ValueError, match="reg must be >= 0"):
        softmax_loss(W, b, X, y, -1.0)
    with pytest.raises(ValueError, match="same n_features"):
        svm_loss(W, b, X[:, :-1], y, 0.0)
    with pytest.raises(ValueError, match="b must have shape"):
        svm_loss(W, b[:-1], X, y, 0.0)
    with pytest.raises(ValueError, match="class indices in 0..4"):
        softmax_loss(W, b, X, y + 5, 0.0)
    with pytest.raises(ValueError, match="y must have shape"):
        softmax_loss(W, b, X, y[:-1], 0.0)
