"""Update rules: minibatch SGD, SGD with (Nesterov) momentum, Adam.

Each optimiser is a small stateful object: ``step(params, grads, lr)`` updates
the parameter arrays in place from their gradients, keeping whatever state the
rule needs (velocities, moment estimates) between calls, so ``partial_fit`` can
continue where the last call stopped.  The learning rate is passed to every
step so that schedules stay separate (:mod:`imgcls.linear.schedules`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")

# Optimiser state below this magnitude is set to 0.  Moment estimates of rarely
# active features decay geometrically towards subnormal floats, which x86 CPUs
# process ~25x slower; a value of 1e-30 has no effect on any update.
_TINY = 1e-30


def _flush_tiny(a):
    a[np.abs(a) < _TINY] = 0


@njit(cache=True)
def _adam_update(p, g, m, v, b1, b2, step, eps):
    """One fused pass of the Adam update over flat arrays (the formula in ``Adam.step``)."""
    for i in range(p.shape[0]):
        mi = b1 * m[i] + (1 - b1) * g[i]
        vi = b2 * v[i] + (1 - b2) * (g[i] * g[i])
        if abs(mi) < _TINY:
            mi = 0.0
        if vi < _TINY:
            vi = 0.0
        m[i] = mi
        v[i] = vi
        p[i] -= step * mi / (np.sqrt(vi) + eps)


class SGD:
    """Plain minibatch gradient descent: ``p -= lr * g``."""

    def __init__(self):
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        for p, g in zip(params, grads):
            p -= p.dtype.type(lr) * g


class Momentum:
    """SGD with classical momentum: ``v = mu * v - lr * g; p += v``.

    With ``nesterov=True`` the gradient is (in effect) taken at the look-ahead
    point ``p + mu * v``, written in the usual form that needs no second
    gradient evaluation: ``v' = mu * v - lr * g; p += -mu * v + (1 + mu) * v'``.
    """

    def __init__(self, momentum=0.9, nesterov=False):
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = None
        self.t = 0

    def step(self, params, grads, lr):
        if self.velocity is None:
            self.velocity = [np.zeros_like(p) for p in params]
        self.t += 1
        for p, g, v in zip(params, grads, self.velocity):
            mu = p.dtype.type(self.momentum)
            lr_ = p.dtype.type(lr)
            if self.nesterov:
                p -= mu * v
                v *= mu
                v -= lr_ * g
                p += (1 + mu) * v
            else:
                v *= mu
                v -= lr_ * g
                p += v
            _flush_tiny(v)


class Adam:
    """Adam (Kingma & Ba, 2015) with bias-corrected moment estimates."""

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.m = None
        self.v = None
        self.t = 0

    def step(self, params, grads, lr):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # bias correction folded into the step size
        lr_t = lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr_t m / (sqrt(v) + eps),
            # fused into one pass (a dozen NumPy passes cost more than the minibatch
            # gradient for small models)
            f = p.dtype.type
            _adam_update(p.reshape(-1), np.ascontiguousarray(g, dtype=p.dtype).reshape(-1),
                         m.reshape(-1), v.reshape(-1), f(b1), f(b2), f(lr_t), f(self.eps))


def make_optimizer(name, momentum=0.9):
    """A fresh optimiser object for ``name`` in ``OPTIMIZERS``."""
    if name == "sgd":
        return SGD()
    if name == "momentum":
        return Momentum(momentum, nesterov=False)
    if name == "nesterov":
        return Momentum(momentum, nesterov=True)
    if name == "adam":
        return Adam()
    raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZERS) + ['lbfgs']}")
