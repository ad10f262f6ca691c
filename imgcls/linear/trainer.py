"""Minibatch training of a linear classifier, apart from the estimator API.

:func:`train` runs epochs of minibatch steps on ``W``, ``b`` in place: each
epoch draws one random permutation of the training rows and walks it in
minibatches; every minibatch is one call of the fused kernel in
:mod:`imgcls.linear._kernels` (scores, loss and data gradient), plus the L2
term and one optimiser step.  What it needs besides the data is one frozen
:class:`TrainConfig`.

Memory: the kernel reads preprocessed float32 rows.  When the preprocessed
training matrix fits in ``working_memory`` (:func:`imgcls.get_config`) it is
made once and every epoch reads it through the permutation (no batch copies);
validation rows are made once the same way when they fit in what the training
rows left of that budget;
otherwise each minibatch's rows are gathered from the raw ``X`` into one
reusable float32 buffer and preprocessed there, so training holds ``X`` plus
O(batch_size x n_features) -- never a float32 or float64 copy of the whole
``X``.  Both ways apply the same elementwise operations
(:func:`imgcls.linear.preprocess.coefficients`) and the same kernel to the
same rows in the same order, so they give bit-for-bit the same model.

Divergence: a minibatch loss that is NaN or infinite, weights that are, or an
epoch whose mean loss exceeds :data:`DIVERGENCE_FACTOR` times the loss of the
all-zero model (where every fit starts) raise
:class:`~imgcls.errors.TrainingDivergedError`, for every optimiser.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from .._validation import first_nonfinite_row
from ..config import budget_bytes
from ..errors import TrainingDivergedError
from . import _kernels
from .preprocess import coefficients, transform, transform_rows
from .schedules import SCHEDULES, learning_rate_at

#: An epoch whose mean training loss exceeds this multiple of the all-zero
#: model's loss (``log(n_classes)`` for softmax, ``(n_classes - 1) * delta`` for
#: the SVM) has diverged.  Every fit starts from that model, and a converging run
#: only lowers the loss on average; an overshooting first epoch stays within a
#: small multiple of it (a mean softmax loss of 1,000 x log 10 = 2,300 means the
#: true class scores 2,300 below the best one on average: no classifier at all),
#: while a diverging rate grows it geometrically (Adam at ``learning_rate=1e8``
#: reaches 1e15), so the exact factor matters little; 1e3 catches a run long
#: before its numbers overflow.
DIVERGENCE_FACTOR = 1e3

_LOSSES = ("svm", "softmax")


@dataclass(frozen=True)
class TrainConfig:
    """What one training run needs besides the data, validated on creation.

    Parameters
    ----------
    loss : {"svm", "softmax"}
    learning_rate : float
        Base rate of the schedule, > 0.
    reg : float
        L2 strength (``reg * sum(W**2)``), >= 0.
    epochs : int
        Length of the schedule in epochs (the cosine period), >= 1.
    batch_size : int
        Samples per minibatch, >= 1 (clipped to the number of samples).
    schedule : {"constant", "step", "cosine"}
    step_size : int
    gamma : float
        Of the ``"step"`` schedule.
    delta : float
        SVM margin, > 0.
    early_stopping : bool
        Stop when the validation accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and keep the best epoch's weights.
    n_iter_no_change : int
    tol : float
    verbose : bool
        Print one line per epoch.
    name : str
        Who trains (for messages).
    hint : str
        Extra advice appended to a divergence message.
    """

    loss: str
    learning_rate: float
    reg: float
    epochs: int
    batch_size: int
    schedule: str = "cosine"
    step_size: int = 5
    gamma: float = 0.5
    delta: float = 1.0
    early_stopping: bool = False
    n_iter_no_change: int = 3
    tol: float = 1e-4
    verbose: bool = False
    name: str = "LinearClassifier"
    hint: str = ""

    def __post_init__(self):
        def bad(field, what):
            raise ValueError(f"TrainConfig.{field} must be {what}, got "
                             f"{getattr(self, field)!r}")

        def number(v):
            return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)

        def count(v):
            return isinstance(v, Integral) and not isinstance(v, bool) and v >= 1

        if self.loss not in _LOSSES:
            bad("loss", f"one of {list(_LOSSES)}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {list(SCHEDULES)}")
        if not (number(self.learning_rate) and self.learning_rate > 0):
            bad("learning_rate", "a finite number > 0")
        if not (number(self.reg) and self.reg >= 0):
            bad("reg", "a finite number >= 0")
        if not (number(self.delta) and self.delta > 0):
            bad("delta", "a finite number > 0")
        if not (number(self.gamma) and 0 < self.gamma <= 1):
            bad("gamma", "a number in (0, 1]")
        if not (number(self.tol) and self.tol >= 0):
            bad("tol", "a finite number >= 0")
        for field in ("epochs", "batch_size", "step_size", "n_iter_no_change"):
            if not count(getattr(self, field)):
                bad(field, "an integer >= 1")
        for field in ("early_stopping", "verbose"):
            if not isinstance(getattr(self, field), (bool, np.bool_)):
                bad(field, "a bool")

    def zero_model_loss(self, n_classes):
        """The data loss of ``W = 0, b = 0`` (all scores equal), where every fit starts."""
        if self.loss == "softmax":
            return math.log(n_classes)
        return (n_classes - 1) * float(self.delta)

    def diverged(self, epoch, what="loss", how="became NaN or infinite"):
        """The error for a run that diverged at ``epoch`` (1-based)."""
        return TrainingDivergedError(
            f"{self.name}: the {what} diverged ({how}) at epoch {epoch}; try a smaller "
            f"learning_rate (now {self.learning_rate:g}){self.hint}")


class _Rows:
    """Preprocessed float32 rows of ``X[rows]`` for the kernel (see "Memory" above).

    ``get(positions)`` returns ``(matrix, kernel_rows, labels)`` such that the
    kernel reads sample ``positions[i]`` as ``matrix[kernel_rows[i]]`` with label
    ``labels[kernel_rows[i]]``.
    """

    def __init__(self, X, y, rows, stats, batch_size, name, budget):
        self.X = X
        self.rows = rows
        self.y = y if rows is None else y[rows]
        self.n = X.shape[0] if rows is None else len(rows)
        n_features = X.shape[1]
        # integer pixels and float32 input always fit float32; wider floats (or a tiny
        # ``scale``) may not, and an inf feature would surface later as a "diverged" loss
        self.unchecked = not (X.dtype.kind in "ub" and X.dtype.itemsize <= 2)
        self.name = name
        if self.n * n_features * 4 <= budget:
            with np.errstate(over="ignore", invalid="ignore"):  # judged just below
                self.matrix = transform(X if rows is None else X[rows], *stats)
            if self.unchecked:
                self._check(self.matrix)
                self.unchecked = False
            self.buffer = None
        else:
            self.matrix = None
            self.coef = coefficients(*stats)
            self.buffer = np.empty((min(batch_size, self.n), n_features), dtype=np.float32)
            self.arange = np.arange(self.buffer.shape[0], dtype=np.int64)

    @property
    def nbytes(self):
        """Bytes these rows hold beside ``X``: the preprocessed matrix or the batch buffer."""
        return (self.matrix if self.matrix is not None else self.buffer).nbytes

    def _check(self, block):
        if first_nonfinite_row(block) is not None:  # blocked: no full-size boolean mask
            raise ValueError(f"{self.name} has values too large for float32 after "
                             f"preprocessing (|x| > 3.4e38); rescale the features or set "
                             f"scale")

    def get(self, positions):
        if self.matrix is not None:
            return self.matrix, positions, self.y
        source = positions if self.rows is None else self.rows[positions]
        with np.errstate(over="ignore", invalid="ignore"):
            block = transform_rows(self.X, source, self.buffer, self.coef)
        if self.unchecked:  # only during the first epoch, which visits every row once
            self._check(block)
        m = positions.shape[0]
        return block, self.arange[:m], self.y[positions]

    def epoch_done(self):
        self.unchecked = False

    def accuracy(self, W, b):
        """Accuracy of ``argmax(W x' + b)`` on all the rows, in bounded blocks."""
        if self.matrix is not None:
            return float(np.mean(np.argmax(self.matrix @ W.T + b, axis=1) == self.y))
        correct = 0
        step = self.buffer.shape[0]
        for i in range(0, self.n, step):
            positions = np.arange(i, min(i + step, self.n))
            block, _, labels = self.get(positions)
            correct += int(np.sum(np.argmax(block @ W.T + b, axis=1) == labels))
        return correct / self.n


def train(X, y, W, b, config, *, stats, optimizer, rng, rows=None, validation=None,
          epoch0=0, n_epochs=None):
    """Minibatch training, updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw features (any real dtype), C-contiguous rows; never copied whole
        unless the preprocessed float32 matrix fits in ``working_memory``.
    y : int64 ndarray of shape (n_samples,)
        Class indices, aligned with ``X``.
    W : float32 ndarray of shape (n_classes, n_features)
    b : float32 ndarray of shape (n_classes,)
    config : TrainConfig
    stats : tuple
        ``(input_scale, mean, scale)`` of :func:`imgcls.linear.preprocess.fit_preprocessing`.
    optimizer : object
        From :func:`imgcls.linear.optim.make_optimizer`; its state carries over.
    rng : numpy.random.Generator
        Draws the permutations.
    rows : int ndarray, optional
        Train on ``X[rows]`` only (e.g. without a hold-out part).
    validation : tuple, optional
        ``(X_val, y_val, val_rows)`` (``val_rows`` may be None): data for
        ``val_acc`` and early stopping.
    epoch0 : int
        Epochs already done (where the schedule continues).
    n_epochs : int, optional
        Epochs to run; default ``config.epochs``.

    Returns
    -------
    history : list of dict
        Per epoch: ``epoch``, ``loss``, ``train_acc``, ``val_acc``, ``lr``.

    Raises
    ------
    TrainingDivergedError
        See the module docstring.
    ValueError
        Features that float32 cannot hold after preprocessing.
    """
    # a diverging run overflows on its way to inf; that is detected and reported as
    # TrainingDivergedError, so numpy's warnings would only be noise
    with np.errstate(over="ignore", invalid="ignore"):
        return _epochs(X, y, W, b, config, stats, optimizer, rng, rows, validation, epoch0,
                       config.epochs if n_epochs is None else n_epochs)


def _epochs(X, y, W, b, config, stats, opt, rng, rows, validation, epoch0, n_epochs):
    budget = budget_bytes()
    data = _Rows(X, y, rows, stats, config.batch_size, "X", budget)
    val = None
    if validation is not None:
        Xv, yv, val_rows = validation
        val = _Rows(Xv, yv, val_rows, stats, config.batch_size, "X_val",
                    max(0.0, budget - data.nbytes))
    n = data.n
    n_classes, n_features = W.shape
    bs = min(config.batch_size, n)
    n_batches = -(-n // bs)
    kind = _kernels.SVM if config.loss == "svm" else _kernels.SOFTMAX
    delta = float(config.delta)
    reg = float(config.reg)
    two_reg = np.float32(2 * reg)
    limit = DIVERGENCE_FACTOR * config.zero_model_loss(n_classes)
    gW_parts = np.empty((_kernels.N_CHUNKS, n_classes, n_features), dtype=np.float32)
    gb_parts = np.empty((_kernels.N_CHUNKS, n_classes))
    parts = np.empty((_kernels.N_CHUNKS, 2))
    gW = np.empty_like(W)
    gb = np.empty(n_classes)
    history = []
    best = (-np.inf, None, None)
    no_improve = 0
    for e in range(n_epochs):
        epoch = epoch0 + e
        perm = rng.permutation(n)
        loss_sum = 0.0
        correct = 0.0
        lr0 = None
        for k in range(n_batches):
            positions = perm[k * bs:(k + 1) * bs]
            m = positions.shape[0]
            lr = learning_rate_at(config.schedule, config.learning_rate, epoch + k / n_batches,
                                  config.epochs, config.step_size, config.gamma)
            lr0 = lr if lr0 is None else lr0
            matrix, kernel_rows, labels = data.get(positions)
            _kernels.minibatch_grad(matrix, kernel_rows, labels, W, b, kind, delta, gW_parts,
                                    gb_parts, parts)
            _kernels.sum_parts(gW_parts, gb_parts, gW, gb)
            w_flat = W.ravel()
            batch_loss = parts[:, 0].sum() / m + reg * float(np.dot(w_flat, w_flat))
            if not math.isfinite(batch_loss):
                raise config.diverged(epoch + 1)
            loss_sum += batch_loss * m
            correct += parts[:, 1].sum()
            gW *= np.float32(1.0 / m)
            gW += two_reg * W
            opt.step([W, b], [gW, (gb / m).astype(np.float32)], lr)
        data.epoch_done()
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise config.diverged(epoch + 1, "weights")
        mean_loss = loss_sum / n
        if mean_loss > limit:
            raise config.diverged(epoch + 1, how=f"grew to a mean of {mean_loss:.3g}, over "
                                  f"{DIVERGENCE_FACTOR:g} x the {limit / DIVERGENCE_FACTOR:.3g} "
                                  f"of the all-zero model it started from")
        val_acc = None if val is None else val.accuracy(W, b)
        history.append({"epoch": epoch + 1, "loss": float(mean_loss),
                        "train_acc": float(correct / n), "val_acc": val_acc, "lr": lr0})
        if config.verbose:
            print(f"{config.name} epoch {epoch + 1}: loss {mean_loss:.5f}, "
                  f"train acc {correct / n:.4f}"
                  + ("" if val_acc is None else f", val acc {val_acc:.4f}")
                  + f", lr {lr0:.3g}", file=sys.stdout, flush=True)
        if config.early_stopping and val is not None:
            if val_acc > best[0] + config.tol:
                best = (val_acc, W.copy(), b.copy())
                no_improve = 0
            else:
                no_improve += 1
                if no_improve >= config.n_iter_no_change:
                    break
    if config.early_stopping and best[1] is not None:
        # keep the weights of the best validation epoch, not of the last one
        W[...] = best[1]
        b[...] = best[2]
    return history
