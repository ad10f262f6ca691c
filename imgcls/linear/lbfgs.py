"""Full-batch training with SciPy's L-BFGS-B, in bounded memory.

The objective is the mean data loss over all training rows plus
``reg * sum(W**2)``, the same as the minibatch trainer's.  Its value and
gradient are accumulated over blocks of rows, in one of two ways:

- **exact** (the preprocessed float64 rows fit in ``working_memory``): they are
  made once and every evaluation is float64, for exact optima on small
  problems (the tests compare it with scikit-learn);
- **folded** (larger data, e.g. 50,000 x 6,400 k-means features): the
  preprocessing ``x' = (x - shift) * mult`` is folded into the weights, so
  each evaluation multiplies the raw rows as they are (float32 rows in
  float32, float64 rows in float64; other dtypes one float32 block at a time)
  and never writes a preprocessed copy of ``X``.  With float32 features the
  products carry float32 rounding (relative ~1e-6, the data's own precision);
  sums over blocks, the loss and the gradient are float64.
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
    """Loss and gradient of ``theta = [W.ravel(), b]`` over row blocks (float64 results)."""

    def __init__(self, X, y, rows, stats, n_classes, config):
        self.X = X
        self.rows = rows
        self.y = y if rows is None else y[rows]
        self.n = X.shape[0] if rows is None else len(rows)
        self.n_classes = n_classes
        self.n_features = X.shape[1]
        self.coef = coefficients(*stats, dtype=np.float64)
        self.config = config
        budget = budget_bytes()
        self.exact = self.n * self.n_features * 8 <= budget
        if self.exact:
            self.cached = transform_rows(X, np.arange(self.n) if rows is None else rows,
                                         np.empty((self.n, self.n_features)), self.coef)
            self.block_rows = max(1, self.n)
        else:
            # a gathered or converted block of raw rows plus its (block, n_classes)
            # scores and score gradient
            per_row = 4 * self.n_features + 16 * n_classes
            self.block_rows = int(max(1, min(self.n, budget // per_row)))
        self.from_scores = SCORE_LOSSES[config.loss]
        self.kw = {"delta": float(config.delta)} if config.loss == "svm" else {}
        self.evaluations = 0
        self.last = None  # (theta, training rows classified right) of the last evaluation

    def split(self, theta):
        size = self.n_classes * self.n_features
        return theta[:size].reshape(self.n_classes, self.n_features), theta[size:]

    def _raw_blocks(self):
        for i in range(0, self.n, self.block_rows):
            if self.rows is None:
                block = self.X[i:i + self.block_rows]
            else:
                block = self.X[self.rows[i:i + self.block_rows]]
            if block.dtype not in (np.float32, np.float64):
                block = block.astype(np.float32)
            yield block, self.y[i:i + block.shape[0]]

    def _scored_blocks(self, W, b):
        """(block or None, its dtype, scores float64 (m, C), labels) for every block of rows."""
        if self.exact:
            scores = self.cached @ W.T
            scores += b
            yield self.cached, scores, self.y
            return
        shift, mult = self.coef
        Wm = W * mult
        b_raw = b - Wm @ shift
        cast = {}
        for block, labels in self._raw_blocks():
            Wb = cast.setdefault(block.dtype, Wm.astype(block.dtype, copy=False))
            scores = (block @ Wb.T).astype(np.float64)
            scores += b_raw
            yield block, scores, labels

    def __call__(self, theta):
        W, b = self.split(theta)
        loss = 0.0
        dW = np.zeros_like(W)
        db = np.zeros_like(b)
        correct = 0
        with np.errstate(over="ignore", invalid="ignore"):
            for block, scores, labels in self._scored_blocks(W, b):
                correct += int(np.sum(np.argmax(scores, axis=1) == labels))
                part, dscores = self.from_scores(scores, labels, **self.kw)
                # each block's mean, weighted by its share of the rows
                share = len(labels) / self.n
                loss += part * share
                dscores *= share
                dW += dscores.T.astype(block.dtype) @ block
                db += dscores.sum(axis=0)
            if not self.exact:
                # d/dW of x' W^T with x' = (x - shift) * mult
                shift, mult = self.coef
                dW *= mult
                dW -= np.outer(db, shift * mult)
        loss += self.config.reg * float(np.dot(theta[:W.size], theta[:W.size]))
        dW += (2 * self.config.reg) * W
        self.evaluations += 1
        if not math.isfinite(loss) or not np.all(np.isfinite(dW)):
            # L-BFGS has no learning rate to lower: a loss beyond the float64 range
            # comes from features on a huge scale
            raise TrainingDivergedError(
                f"{self.config.name}: the loss became infinite or NaN at evaluation "
                f"{self.evaluations} of L-BFGS; the features are on too large a scale "
                f"(set scale, or standardize=True)")
        self.last = (theta.copy(), correct)
        return loss, np.concatenate([dW.ravel(), db])

    def accuracy(self, theta):
        """Share of the rows classified right at ``theta`` (free after evaluating there)."""
        if self.last is not None and np.array_equal(self.last[0], theta):
            return self.last[1] / self.n
        W, b = self.split(theta)
        correct = sum(int(np.sum(np.argmax(scores, axis=1) == labels))
                      for _, scores, labels in self._scored_blocks(W, b))
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
        x = intermediate_result.x
        history.append({"epoch": len(history) + 1, "loss": float(intermediate_result.fun),
                        "train_acc": objective.accuracy(x),
                        "val_acc": None if val is None else val.accuracy(x), "lr": None})

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
