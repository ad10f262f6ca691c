"""Update rules, learning-rate schedules and preprocessing, each on its own."""

import math

import numpy as np
import pytest

from imgcls.linear.optim import Adam, Momentum, SGD, make_optimizer
from imgcls.linear.preprocess import fit_preprocessing, input_scale_for, transform
from imgcls.linear.schedules import learning_rate_at


def quadratic_descent(opt, lr, steps=300):
    """Minimise 0.5 * sum(a * p**2) (minimum at 0) from p = 1."""
    a = np.array([1.0, 10.0], dtype=np.float32)
    p = np.ones(2, dtype=np.float32)
    q = np.ones(3, dtype=np.float32)  # a second parameter array, gradient q
    for _ in range(steps):
        opt.step([p, q], [a * p, q.copy()], lr)
    return p, q


@pytest.mark.parametrize("opt,lr", [(SGD(), 0.05), (Momentum(0.9), 0.01),
                                    (Momentum(0.9, nesterov=True), 0.01), (Adam(), 0.05)])
def test_optimizers_minimise_a_quadratic(opt, lr):
    p, q = quadratic_descent(opt, lr)
    assert np.abs(p).max() < 1e-2 and np.abs(q).max() < 1e-2
    assert opt.t == 300


def test_update_formulas_one_step():
    g = np.array([2.0])
    p = np.array([1.0])
    SGD().step([p], [g], 0.1)
    assert p[0] == pytest.approx(0.8)
    m = Momentum(0.5)
    p = np.array([1.0])
    m.step([p], [g], 0.1)  # v = -0.2
    m.step([p], [g], 0.1)  # v = 0.5 * -0.2 - 0.2 = -0.3
    assert p[0] == pytest.approx(1 - 0.2 - 0.3)
    n = Momentum(0.5, nesterov=True)
    p = np.array([1.0])
    n.step([p], [g], 0.1)  # v' = -0.2; p += -0.5 * 0 + 1.5 * -0.2
    assert p[0] == pytest.approx(0.7)
    a = Adam()
    p = np.array([1.0])
    a.step([p], [g], 0.1)  # first bias-corrected step is lr * sign(g)
    assert p[0] == pytest.approx(0.9, abs=1e-6)


def test_adam_state_never_goes_subnormal():
    a = Adam()
    p = np.ones(4, dtype=np.float32)
    a.step([p], [np.full(4, 1e-3, np.float32)], 1e-3)
    for _ in range(2000):
        a.step([p], [np.zeros(4, np.float32)], 1e-3)
    tiny = np.finfo(np.float32).tiny
    for arr in (a.m[0], a.v[0]):
        assert np.all((arr == 0) | (np.abs(arr) >= tiny))


def test_unknown_optimizer_and_schedule():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate_at("linear", 0.1, 0, 10)
    assert isinstance(make_optimizer("nesterov"), Momentum)


def test_schedules():
    assert learning_rate_at("constant", 0.1, 7.3, 10) == 0.1
    assert learning_rate_at("step", 0.1, 4.9, 10, step_size=5, gamma=0.1) == 0.1
    assert learning_rate_at("step", 0.1, 5.0, 10, step_size=5, gamma=0.1) == pytest.approx(0.01)
    assert learning_rate_at("cosine", 0.1, 0, 10) == 0.1
    assert learning_rate_at("cosine", 0.1, 5, 10) == pytest.approx(0.05)
    assert learning_rate_at("cosine", 0.1, 9.999, 10) < 1e-6
    # warm restart after a full period (partial_fit)
    assert learning_rate_at("cosine", 0.1, 10, 10) == 0.1
    assert learning_rate_at("cosine", 0.1, 12.5, 10) == pytest.approx(
        0.05 * (1 + math.cos(math.pi / 4)))


def test_preprocessing_rule_and_values():
    rng = np.random.default_rng(0)
    X8 = rng.integers(0, 256, (50, 7)).astype(np.uint8)
    assert input_scale_for(X8, "auto") == 255.0
    assert input_scale_for(X8.astype(np.float32), "auto") == 1.0
    assert input_scale_for(X8, 2.0) == 2.0
    s, mean, sd = fit_preprocessing(X8, "auto", center=True, standardize=True)
    Xf = X8 / 255.0
    np.testing.assert_allclose(mean, Xf.mean(0))
    np.testing.assert_allclose(sd, Xf.std(0))
    out = transform(X8, s, mean, sd)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, (Xf - Xf.mean(0)) / Xf.std(0), rtol=1e-5, atol=1e-5)
    s, mean, sd = fit_preprocessing(X8, "auto", center=False, standardize=False)
    assert np.all(mean == 0) and np.all(sd == 1)
    np.testing.assert_allclose(transform(X8, s, mean, sd, dtype=np.float64), Xf)


def test_threaded_transform_equals_the_formula():
    rng = np.random.default_rng(1)
    X8 = rng.integers(0, 256, (7000, 784)).astype(np.uint8)  # above the threading threshold
    s, mean, sd = fit_preprocessing(X8, "auto", center=True)
    out = transform(X8, s, mean, sd)
    ref = ((X8 - (s * mean).astype(np.float32)) * (1 / (s * sd)).astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref.astype(np.float32))
