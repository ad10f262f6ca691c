"""Full-batch training with SciPy's L-BFGS-B, in float64, in bounded memory.

The objective is the mean data loss over all training rows plus
``reg * sum(W**2)``, the same as the minibatch trainer's.  Its value and
gradient are accumulated over blocks of rows: each block is preprocessed into
one reusable float64 buffer bounded by ``working_memory``, so no float64 copy
of the whole ``X`` is ever made.  L-BFGS minimises to a tight tolerance, for
exact optima on small problems (the tests compare it with scikit-learn).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..config import budget_bytes
from .losses import SCORE_LOSSES
from ..errors import TrainingDivergedError
from .preprocess import coefficients, transform_rows


class _Objective:
    """Loss and gradient of ``theta = [W.ravel(), b]`` over row blocks (float64)."""

    def __init__(self, X, y, rows, stats, n_classes, config):
        self.X = X
        self.rows = np.arange(X.shape[0]) if rows is None else rows
        self.y = y[self.rows]
        self.n = len(self.rows)
        self.n_classes = n_classes
        self.n_features = X.shape[1]
        self.coef = coefficients(*stats, dtype=np.float64)
        self.config = config
        budget = budget_bytes()
        # the block buffer plus its (block, n_classes) scores and score gradient
        per_row = 8 * (self.n_features + 2 * n_classes)
        self.block_rows = int(max(1, min(self.n, budget // per_row)))
        self.buffer = np.empty((self.block_rows, self.n_features))
        from_scores = SCORE_LOSSES[config.loss]
        self.kw = {"delta": float(config.delta)} if config.loss == "svm" else {}
        self.from_scores = from_scores
        self.evaluations = 0

    def split(self, theta):
        size = self.n_classes * self.n_features
        return theta[:size].reshape(self.n_classes, self.n_features), theta[size:]

    def blocks(self):
        for i in range(0, self.n, self.block_rows):
            rows = self.rows[i:i + self.block_rows]
            yield transform_rows(self.X, rows, self.buffer, self.coef), self.y[i:i + len(rows)]

    def __call__(self, theta):
        W, b = self.split(theta)
        loss = 0.0
        dW = np.zeros_like(W)
        db = np.zeros_like(b)
        with np.errstate(over="ignore", invalid="ignore"):
            for block, labels in self.blocks():
                scores = block @ W.T
                scores += b
                part, dscores = self.from_scores(scores, labels, **self.kw)
                # each block's mean, weighted by its share of the rows
                share = len(labels) / self.n
                loss += part * share
                dscores *= share
                dW += dscores.T @ block
                db += dscores.sum(axis=0)
        loss += self.config.reg * float(np.dot(theta[:W.size], theta[:W.size]))
        dW += (2 * self.config.reg) * W
        self.evaluations += 1
        if not math.isfinite(loss):
            # L-BFGS has no learning rate to lower: a loss beyond the float64 range
            # comes from features on a huge scale
            raise TrainingDivergedError(
                f"{self.config.name}: the loss became infinite or NaN at evaluation "
                f"{self.evaluations} of L-BFGS; the features are on too large a scale "
                f"(set scale, or standardize=True)")
        return loss, np.concatenate([dW.ravel(), db])

    def accuracy(self, W, b):
        correct = 0
        for block, labels in self.blocks():
            correct += int(np.sum(np.argmax(block @ W.T + b, axis=1) == labels))
        return correct / self.n


def train_lbfgs(X, y, n_classes, config, *, stats, rows=None, validation=None):
    """Minimise the full-batch objective with L-BFGS-B from ``W = 0, b = 0``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw features.
    y : int64 ndarray of shape (n_samples,)
        Class indices aligned with ``X``.
    n_classes : int
    config : TrainConfig
        ``epochs`` is the maximum number of L-BFGS iterations.
    stats : tuple
        ``(input_scale, mean, scale)``.
    rows : int ndarray, optional
        Train on ``X[rows]`` only.
    validation : tuple, optional
        ``(X_val, y_val, val_rows)`` for ``val_acc``.

    Returns
    -------
    W : float64 ndarray of shape (n_classes, n_features)
    b : float64 ndarray of shape (n_classes,)
    history : list of dict
        One entry per iteration (``lr`` is None).

    Raises
    ------
    TrainingDivergedError
        A loss or weights beyond the float64 range (features on a huge scale).
    """
    from scipy.optimize import minimize

    objective = _Objective(X, y, rows, stats, n_classes, config)
    val = None
    if validation is not None:
        Xv, yv, val_rows = validation
        val = _Objective(Xv, yv, val_rows, stats, n_classes, config)
    history = []

    def callback(intermediate_result):
        W, b = objective.split(intermediate_result.x)
        history.append({"epoch": len(history) + 1, "loss": float(intermediate_result.fun),
                        "train_acc": objective.accuracy(W, b),
                        "val_acc": None if val is None else val.accuracy(W, b), "lr": None})

    size = n_classes * X.shape[1] + n_classes
    res = minimize(objective, np.zeros(size), jac=True, method="L-BFGS-B", callback=callback,
                   options={"maxiter": config.epochs, "maxfun": 2 * config.epochs + 20,
                            "ftol": 1e3 * np.finfo(float).eps, "gtol": 1e-9})
    if res.status == 1:
        warnings.warn(f"{config.name}: L-BFGS stopped after {config.epochs} iterations "
                      f"without converging; increase epochs", ConvergenceWarning, stacklevel=4)
    if not np.all(np.isfinite(res.x)):
        raise TrainingDivergedError(f"{config.name}: the L-BFGS weights became infinite or "
                                    f"NaN; set scale, or standardize=True")
    W, b = objective.split(res.x)
    return W.copy(), b.copy(), history
