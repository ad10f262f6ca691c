"""The shared estimator behind :class:`LinearSVM` and :class:`Softmax`.

Training in short: the data is validated, preprocessed once (see
:mod:`imgcls.linear.preprocess`) into a float32 C-contiguous matrix, and then
each epoch draws one random permutation and walks it in minibatches; every
minibatch is one call of the fused kernel in :mod:`imgcls.linear._kernels`
(scores, loss and data gradient, reading rows through the permutation, so no
batch copies), plus the L2 term and one optimiser step.  ``optimizer="lbfgs"``
instead minimises the full-batch objective with SciPy's L-BFGS-B in float64,
for exact optima on small problems.

Every fit is transactional: the new weights, statistics and history are built
in local variables and only assigned when training succeeded, so a bad input or
a diverging run leaves the estimator exactly as it was.
"""

from __future__ import annotations

import math
import sys
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import (CLASSIFIER_ATTRIBUTES, Array, Float, Int, Interval, Records,
                           Schema, flatten_images)
from ..config import get_config
from ..errors import TrainingDivergedError
from . import _kernels
from .losses import get_loss
from .optim import OPTIMIZERS, make_optimizer
from .preprocess import fit_preprocessing, transform
from .schedules import SCHEDULES, learning_rate_at


class LinearClassifierBase(ClassifierMixin, BaseEstimator):
    """Shared implementation; use :class:`LinearSVM` or :class:`Softmax`."""

    _loss = None  # "svm" or "softmax", set by the subclasses

    # Checked by ``fit`` and ``partial_fit`` (``self._validate_params()``), by model
    # files on load and by the searches for every grid point.  The one rule they
    # cannot state, that ``partial_fit`` needs a minibatch optimizer, is in
    # ``_partial_fit``; the data-dependent one, that ``validation_fraction`` must
    # leave training samples, is in ``_holdout``.
    _parameter_constraints = {
        "learning_rate": [Interval(Real, 0, np.inf, closed="neither")],
        "reg": [Interval(Real, 0, np.inf, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions({*OPTIMIZERS, "lbfgs"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "schedule": [StrOptions(set(SCHEDULES))],
        "step_size": [Interval(Integral, 1, None, closed="left")],
        "gamma": [Interval(Real, 0, 1, closed="right")],
        "scale": [StrOptions({"auto"}), Interval(Real, 0, np.inf, closed="neither")],
        "center": ["boolean"],
        "standardize": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, np.inf, closed="left")],
        # numpy's seed range (a uint32), or a generator to draw from
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"),
                         np.random.RandomState, np.random.Generator, None],
        "verbose": ["verbose"],
    }

    #: What a fitted model holds; checked by :func:`imgcls._validation.validate_learned_attributes`
    #: (e.g. when a model file is loaded).  ``templates_`` is a property, not stored.
    _learned_attribute_schema = Schema(
        dims={"n_classes": 2, "n_features": 1, "n_epochs": 0},
        attributes={
            **CLASSIFIER_ATTRIBUTES,
            "W_": Array(("n_classes", "n_features"), dtypes=("float64",), finite=True),
            "b_": Array(("n_classes",), dtypes=("float64",), finite=True),
            "input_scale_": Float(positive=True),
            "mean_": Array(("n_features",), dtypes=("float64",), finite=True),
            "scale_": Array(("n_features",), dtypes=("float64",), finite=True, positive=True),
            "history_": Records({"epoch": Int(min=1), "loss": Float(),
                                 "train_acc": Float(min=0, max=1),
                                 "val_acc": Float(min=0, max=1, none=True),
                                 "lr": Float(min=0, none=True)}, length="n_epochs"),
            "n_iter_": Int(dim="n_epochs"),
        })

    def __init__(self, learning_rate=0.03, reg=1e-4, epochs=5, batch_size=256,
                 optimizer="adam", momentum=0.9, schedule="cosine", step_size=5, gamma=0.5,
                 scale="auto", center=True, standardize=False, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=3, tol=1e-4, random_state=None,
                 verbose=False):
        self.learning_rate = learning_rate
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.momentum = momentum
        self.schedule = schedule
        self.step_size = step_size
        self.gamma = gamma
        self.scale = scale
        self.center = center
        self.standardize = standardize
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _loss_params(self):
        return {}

    def _rng(self):
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            return np.random.default_rng(rs.randint(2**32, dtype=np.int64))
        if isinstance(rs, np.random.Generator):
            return rs
        return np.random.default_rng(rs)

    def _validate_X(self, X, reset):
        X, image_shape = flatten_images(X)
        X = validate_data(self, X, reset=reset, dtype="numeric")
        return self._as_numeric(X), image_shape

    @staticmethod
    def _as_numeric(X):
        if X.dtype == bool:
            X = X.astype(np.float32)
        return X

    def _labels_to_index(self, y, classes, what="y"):
        idx = np.searchsorted(classes, y)
        idx = np.clip(idx, 0, len(classes) - 1)
        bad = classes[idx] != y
        if np.any(bad):
            unknown = np.unique(np.asarray(y)[bad])[:5].tolist()
            raise ValueError(f"{what} contains labels {unknown} that are not among the "
                             f"classes {classes.tolist()}")
        return idx.astype(np.int64)

    # -------------------------------------------------------------- public API
    def fit(self, X, y, X_val=None, y_val=None):
        """Train from scratch on ``X``, ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
            Training features or images (flattened internally).
        y : array-like of shape (n_samples,)
            Class labels (any sortable values).
        X_val, y_val : array-like, optional
            Validation data, used for ``history_[i]["val_acc"]`` and, with
            ``early_stopping=True``, to decide when to stop (otherwise
            ``validation_fraction`` of the training data is held out for it).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Bad parameters or data (NaN/inf, one class, mismatched lengths ...).
        imgcls.errors.TrainingDivergedError
            The loss became NaN or infinite (learning rate too high).
        """
        snapshot = dict(self.__dict__)
        try:
            return self._fit(X, y, X_val, y_val)
        except BaseException:
            # validate_data sets n_features_in_ early; put everything back
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    def partial_fit(self, X, y, classes=None):
        """One epoch of training on a chunk of data, continuing from the current weights.

        The first call needs ``classes`` (all labels that will ever appear) and
        fits the preprocessing statistics on that first chunk; later chunks
        reuse them (a model whose feature map moved under its weights would be
        inconsistent).  The optimiser state carries over between calls; each
        call advances the learning-rate schedule by one epoch (a cosine
        schedule restarts every ``epochs`` calls).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), optional
            Required on the first call; if given later it must match ``classes_``.

        Returns
        -------
        self
        """
        snapshot = dict(self.__dict__)
        try:
            return self._partial_fit(X, y, classes)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    def decision_function(self, X):
        """Class scores ``W x' + b`` of the preprocessed samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), float64
            With exactly two classes, scikit-learn's convention (which its
            estimator checks require) applies: shape (n_samples,), the score of
            ``classes_[1]`` minus that of ``classes_[0]``.  :meth:`class_scores`
            always returns (n_samples, n_classes).
        """
        scores = self.class_scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def class_scores(self, X):
        """Class scores ``W x' + b``, shape (n_samples, n_classes) for any number of classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W, C)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), float64
        """
        check_is_fitted(self, "W_")
        X, _ = self._validate_X(X, reset=False)
        n = X.shape[0]
        W = np.asarray(self.W_, dtype=np.float64)
        b = np.asarray(self.b_, dtype=np.float64)
        out = np.empty((n, W.shape[0]))
        # blocks bounded by working_memory, so a large X never gets a full float64 copy
        rows = max(1, int(get_config()["working_memory"] * 2**20 // (8 * max(1, X.shape[1]))))
        for i in range(0, n, rows):
            Xp = transform(X[i:i + rows], self.input_scale_, self.mean_, self.scale_,
                           dtype=np.float64)
            np.matmul(Xp, W.T, out=out[i:i + rows])
        out += b
        return out

    def predict(self, X):
        """Predicted class labels, shape (n_samples,)."""
        scores = self.class_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    @property
    def templates_(self):
        """The rows of ``W_`` as images: (n_classes, *image_shape_), or (n_classes, n_features).

        Each row is divided by ``scale_``, so the template is the weight per
        scaled input pixel (identical to ``W_`` unless ``standardize=True``).
        Mapping values to colours for display is the plotting code's job.
        """
        check_is_fitted(self, "W_")
        T = np.asarray(self.W_, dtype=np.float64) / self.scale_
        shape = self.image_shape_
        return T.reshape((T.shape[0], *shape)) if shape else T

    # -------------------------------------------------------------- internals
    def _prepare_xy(self, X, y, reset):
        X, image_shape = flatten_images(X)
        X, y = validate_data(self, X, y, reset=reset, dtype="numeric")
        check_classification_targets(y)
        return self._as_numeric(X), y, image_shape

    def _fit(self, X, y, X_val, y_val):
        self._validate_params()
        X, y, image_shape = self._prepare_xy(X, y, reset=True)
        classes, yi = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); a classifier needs "
                             f"samples of at least two classes")
        yi = yi.astype(np.int64)
        rng = self._rng()
        Xv = yv = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("X_val and y_val must be given together")
            try:
                Xv, _ = self._validate_X(X_val, reset=False)
            except ValueError as e:
                raise ValueError(f"X_val: {e}") from None
            y_val = np.asarray(y_val)
            if y_val.ndim != 1 or len(y_val) != Xv.shape[0]:
                raise ValueError(f"X_val has {Xv.shape[0]} samples but y_val has shape "
                                 f"{y_val.shape}")
            yv = self._labels_to_index(y_val, classes, "y_val")
        elif self.early_stopping and self.optimizer != "lbfgs":
            X, yi, Xv, yv = _holdout(X, yi, self.validation_fraction, rng)

        stats = fit_preprocessing(X, self.scale, self.center, self.standardize)
        n_classes, n_features = len(classes), X.shape[1]
        if self.optimizer == "lbfgs":
            W, b, history = self._fit_lbfgs(X, yi, Xv, yv, stats, n_classes)
            opt = None
        else:
            Xp = _to_float32(X, stats)
            Xvp = None if Xv is None else _to_float32(Xv, stats, "X_val")
            W = np.zeros((n_classes, n_features), dtype=np.float32)
            b = np.zeros(n_classes, dtype=np.float32)
            opt = make_optimizer(self.optimizer, self.momentum)
            history = self._run_epochs(Xp, yi, Xvp, yv, W, b, opt, 0, self.epochs,
                                       rng, self.early_stopping and Xv is not None)
        self._commit(classes, image_shape, stats, W, b, history, opt, rng)
        return self

    def _partial_fit(self, X, y, classes):
        self._validate_params()
        # a rule between a parameter and the method, which constraints cannot state
        if self.optimizer == "lbfgs":
            raise ValueError("partial_fit needs a minibatch optimizer; optimizer='lbfgs' "
                             "only works with fit")
        first = not hasattr(self, "W_")
        X, y, image_shape = self._prepare_xy(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(all labels that can occur)")
            classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError(f"classes has only one class ({classes[0]!r}); a classifier "
                                 f"needs at least two")
            stats = fit_preprocessing(X, self.scale, self.center, self.standardize)
            W = np.zeros((len(classes), X.shape[1]), dtype=np.float32)
            b = np.zeros(len(classes), dtype=np.float32)
            history, opt, done = [], None, 0
        else:
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                          self.classes_):
                raise ValueError(f"classes {np.unique(classes).tolist()} differ from the "
                                 f"classes of the earlier calls {self.classes_.tolist()}")
            classes = self.classes_
            image_shape = self.image_shape_
            stats = (self.input_scale_, self.mean_, self.scale_)
            W = np.array(self.W_, dtype=np.float32)
            b = np.array(self.b_, dtype=np.float32)
            history = [dict(h) for h in self.history_]
            opt = getattr(self, "_optimizer", None)
            done = len(history)
        yi = self._labels_to_index(y, classes)
        # the optimiser state is copied so a failure cannot leave it half-updated
        opt = _copy_optimizer(opt) if opt is not None else make_optimizer(self.optimizer,
                                                                         self.momentum)
        rng = getattr(self, "_rng_state", None) or self._rng()
        rng = _copy_rng(rng)
        Xp = _to_float32(X, stats)
        history += self._run_epochs(Xp, yi, None, None, W, b, opt, done, 1, rng, False)
        self._commit(classes, image_shape, stats, W, b, history, opt, rng)
        return self

    def _commit(self, classes, image_shape, stats, W, b, history, opt, rng):
        self.classes_ = classes
        self.image_shape_ = image_shape
        self.input_scale_, self.mean_, self.scale_ = float(stats[0]), stats[1], stats[2]
        self.W_ = np.asarray(W, dtype=np.float64)
        self.b_ = np.asarray(b, dtype=np.float64)
        self.history_ = history
        self.n_iter_ = len(history)
        self._optimizer = opt
        self._rng_state = rng

    def _diverged(self, epoch, what="loss"):
        return TrainingDivergedError(
            f"{type(self).__name__}: the {what} diverged (became NaN or infinite) at epoch "
            f"{epoch}; try a smaller learning_rate (now {self.learning_rate:g})"
            + (", or scale the features" if self.scale == "auto" and not self.center else ""))

    def _run_epochs(self, X, y, Xv, yv, W, b, opt, epoch0, n_epochs, rng, early_stop):
        """Minibatch training for ``n_epochs`` epochs, updating W and b in place."""
        # a diverging run overflows on its way to inf; that is detected and reported
        # as TrainingDivergedError below, so numpy's warnings would only be noise
        with np.errstate(over="ignore", invalid="ignore"):
            return self._epochs(X, y, Xv, yv, W, b, opt, epoch0, n_epochs, rng, early_stop)

    def _epochs(self, X, y, Xv, yv, W, b, opt, epoch0, n_epochs, rng, early_stop):
        n, n_features = X.shape
        n_classes = W.shape[0]
        bs = min(self.batch_size, n)
        n_batches = -(-n // bs)
        kind = _kernels.SVM if self._loss == "svm" else _kernels.SOFTMAX
        delta = float(self._loss_params().get("delta", 1.0))
        reg = float(self.reg)
        two_reg = np.float32(2 * reg)
        gW_parts = np.empty((_kernels.N_CHUNKS, n_classes, n_features), dtype=np.float32)
        gb_parts = np.empty((_kernels.N_CHUNKS, n_classes))
        stats = np.empty((_kernels.N_CHUNKS, 2))
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
                rows = perm[k * bs:(k + 1) * bs]
                m = rows.shape[0]
                lr = learning_rate_at(self.schedule, self.learning_rate, epoch + k / n_batches,
                                      self.epochs, self.step_size, self.gamma)
                lr0 = lr if lr0 is None else lr0
                _kernels.minibatch_grad(X, rows, y, W, b, kind, delta, gW_parts, gb_parts,
                                        stats)
                _kernels.sum_parts(gW_parts, gb_parts, gW, gb)
                w_flat = W.ravel()
                batch_loss = stats[:, 0].sum() / m + reg * float(np.dot(w_flat, w_flat))
                if not math.isfinite(batch_loss):
                    raise self._diverged(epoch + 1)
                loss_sum += batch_loss * m
                correct += stats[:, 1].sum()
                gW *= np.float32(1.0 / m)
                gW += two_reg * W
                opt.step([W, b], [gW, (gb / m).astype(np.float32)], lr)
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise self._diverged(epoch + 1, "weights")
            val_acc = None
            if Xv is not None:
                val_acc = float(np.mean(np.argmax(Xv @ W.T + b, axis=1) == yv))
            history.append({"epoch": epoch + 1, "loss": float(loss_sum / n),
                            "train_acc": float(correct / n),
                            "val_acc": val_acc, "lr": lr0})
            if self.verbose:
                print(f"{type(self).__name__} epoch {epoch + 1}: loss {loss_sum / n:.5f}, "
                      f"train acc {correct / n:.4f}"
                      + ("" if val_acc is None else f", val acc {val_acc:.4f}")
                      + f", lr {lr0:.3g}", file=sys.stdout, flush=True)
            if early_stop:
                if val_acc > best[0] + self.tol:
                    best = (val_acc, W.copy(), b.copy())
                    no_improve = 0
                else:
                    no_improve += 1
                    if no_improve >= self.n_iter_no_change:
                        break
        if early_stop and best[1] is not None:
            # keep the weights of the best validation epoch, not of the last one
            W[...] = best[1]
            b[...] = best[2]
        return history

    def _fit_lbfgs(self, X, y, Xv, yv, stats, n_classes):
        """Full-batch minimisation of the regularised loss with SciPy's L-BFGS-B (float64)."""
        from scipy.optimize import minimize

        Xp = transform(X, *stats, dtype=np.float64)
        Xvp = None if Xv is None else transform(Xv, *stats, dtype=np.float64)
        n_features = Xp.shape[1]
        loss_fn = get_loss(self._loss)
        kw = self._loss_params()
        reg = float(self.reg)
        size = n_classes * n_features

        def fun(theta):
            W = theta[:size].reshape(n_classes, n_features)
            loss, dW, db = loss_fn(W, theta[size:], Xp, y, reg, **kw)
            if not math.isfinite(loss):
                raise self._diverged(len(history) + 1)
            return loss, np.concatenate([dW.ravel(), db])

        history = []

        def callback(intermediate_result):
            theta = intermediate_result.x
            W, b = theta[:size].reshape(n_classes, n_features), theta[size:]
            acc = float(np.mean(np.argmax(Xp @ W.T + b, axis=1) == y))
            val = None if Xvp is None else float(np.mean(np.argmax(Xvp @ W.T + b, axis=1) == yv))
            history.append({"epoch": len(history) + 1, "loss": float(intermediate_result.fun),
                            "train_acc": acc, "val_acc": val, "lr": None})

        res = minimize(fun, np.zeros(size + n_classes), jac=True, method="L-BFGS-B",
                       callback=callback,
                       options={"maxiter": self.epochs, "maxfun": 2 * self.epochs + 20,
                                "ftol": 1e3 * np.finfo(float).eps, "gtol": 1e-9})
        if res.status == 1:
            warnings.warn(f"{type(self).__name__}: L-BFGS stopped after {self.epochs} "
                          f"iterations without converging; increase epochs",
                          ConvergenceWarning, stacklevel=3)
        theta = res.x
        if not np.all(np.isfinite(theta)):
            raise self._diverged(len(history), "weights")
        return theta[:size].reshape(n_classes, n_features), theta[size:], history


def _to_float32(X, stats, name="X"):
    """The preprocessed float32 training matrix; refuses values float32 cannot hold."""
    with np.errstate(over="ignore", invalid="ignore"):  # judged just below
        Xp = transform(X, *stats)
    # integer pixels and float32 input always fit; wider floats (or a tiny ``scale``)
    # may not, and an inf feature would surface later as a "diverged" loss
    if not (X.dtype.kind in "ub" and X.dtype.itemsize <= 2) and not np.isfinite(Xp).all():
        raise ValueError(f"{name} has values too large for float32 after preprocessing "
                         f"(|x| > 3.4e38); rescale the features or set scale")
    return Xp


def _holdout(X, y, fraction, rng):
    """Split off ``fraction`` of the samples (stratified when every class allows it)."""
    n = len(y)
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise ValueError(f"validation_fraction={fraction} leaves no training samples "
                         f"out of {n}")
    val = []
    counts = np.bincount(y)
    if np.all(counts[counts > 0] >= 2):
        # per class, the same share; rounding leftovers drawn at random
        for c in np.flatnonzero(counts):
            members = rng.permutation(np.flatnonzero(y == c))
            val.append(members[:max(1, int(round(fraction * len(members))))])
        val = np.sort(np.concatenate(val))
    else:
        val = np.sort(rng.permutation(n)[:n_val])
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return X[mask], y[mask], X[val], y[val]


def _copy_optimizer(opt):
    import copy

    return copy.deepcopy(opt)


def _copy_rng(rng):
    g = np.random.Generator(type(rng.bit_generator)())
    g.bit_generator.state = rng.bit_generator.state
    return g
