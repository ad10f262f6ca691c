"""The shared estimator behind :class:`LinearSVM` and :class:`Softmax`.

This module is the estimator API: parameters and their constraints, the
learned-attribute schema, input validation, ``fit`` / ``partial_fit`` /
``predict`` and the rest.  Training itself is elsewhere: the minibatch loop in
:mod:`imgcls.linear.trainer` (configured by one :class:`TrainConfig` built from
the parameters) and the full-batch L-BFGS path in :mod:`imgcls.linear.lbfgs`;
the data is preprocessed as in :mod:`imgcls.linear.preprocess`.

Every fit is transactional: the new weights, statistics and history are built
in local variables and only assigned when training succeeded, so a bad input or
a diverging run leaves the estimator exactly as it was.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import (CLASSIFIER_ATTRIBUTES, Array, Float, Int, Interval, Records,
                           Schema, flatten_images)
from ..config import budget_bytes
from .lbfgs import train_lbfgs
from .optim import OPTIMIZERS, make_optimizer
from .preprocess import fit_preprocessing, transform
from .schedules import SCHEDULES
from .trainer import TrainConfig, train

#: ``epochs="auto"``: at least this many epochs ...
AUTO_MIN_EPOCHS = 5
#: ... and at least this many minibatch steps (see :func:`auto_epochs`) ...
AUTO_MIN_STEPS = 500
#: ... but no more epochs than this (a tiny data set gets full-batch steps).
AUTO_MAX_EPOCHS = 100
#: ``epochs="auto"`` with ``optimizer="lbfgs"``: at most this many L-BFGS iterations.
AUTO_LBFGS_ITERATIONS = 500


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
        "epochs": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
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

    def __init__(self, learning_rate=0.03, reg=1e-4, epochs="auto", batch_size=256,
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
        rows = max(1, int(budget_bytes() // (8 * max(1, X.shape[1]))))
        for i in range(0, n, rows):
            Xp = transform(X[i:i + rows], self.input_scale_, self.mean_, self.scale_,
                           dtype=np.float64)
            np.matmul(Xp, W.T, out=out[i:i + rows])
            del Xp  # else the next block is made while this one is still held: 2x the budget
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
        rows = validation = None
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
            validation = (Xv, self._labels_to_index(y_val, classes, "y_val"), None)
        elif self.early_stopping and self.optimizer != "lbfgs":
            # index arrays into X, not copies of its two parts
            rows, val_rows = _holdout(yi, self.validation_fraction, rng)
            validation = (X, yi, val_rows)

        stats = fit_preprocessing(X, self.scale, self.center, self.standardize, rows=rows)
        n_classes, n_features = len(classes), X.shape[1]
        n_train = X.shape[0] if rows is None else len(rows)
        config = self._train_config(n_train)
        if self.optimizer == "lbfgs":
            W, b, history = train_lbfgs(X, yi, n_classes, config, stats=stats,
                                        validation=validation)
            opt = None
        else:
            W = np.zeros((n_classes, n_features), dtype=np.float32)
            b = np.zeros(n_classes, dtype=np.float32)
            opt = make_optimizer(self.optimizer, self.momentum)
            history = train(X, yi, W, b, config, stats=stats, optimizer=opt, rng=rng,
                            rows=rows, validation=validation)
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
        # each call is one epoch of a schedule whose length does not depend on the
        # size of the chunks, hence no step budget (see ``auto_epochs``)
        config = self._train_config(None)
        history += train(X, yi, W, b, config, stats=stats, optimizer=opt, rng=rng,
                         epoch0=done, n_epochs=1)
        self._commit(classes, image_shape, stats, W, b, history, opt, rng)
        return self

    def _train_config(self, n_train):
        """The trainer's :class:`TrainConfig` for ``n_train`` samples (None: partial_fit)."""
        epochs = self.epochs
        if epochs == "auto":
            if self.optimizer == "lbfgs":
                epochs = AUTO_LBFGS_ITERATIONS
            elif n_train is None:
                epochs = AUTO_MIN_EPOCHS
            else:
                epochs = auto_epochs(n_train, self.batch_size)
        hint = ", or scale the features" if self.scale == "auto" and not self.center else ""
        return TrainConfig(
            loss=self._loss, learning_rate=float(self.learning_rate), reg=float(self.reg),
            epochs=int(epochs), batch_size=int(self.batch_size), schedule=self.schedule,
            step_size=int(self.step_size), gamma=float(self.gamma),
            delta=float(self._loss_params().get("delta", 1.0)),
            early_stopping=bool(self.early_stopping),
            n_iter_no_change=int(self.n_iter_no_change), tol=float(self.tol),
            verbose=bool(self.verbose), name=type(self).__name__, hint=hint)

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


def auto_epochs(n_samples, batch_size):
    """Epochs of ``epochs="auto"`` for ``n_samples`` training samples.

    At least ``AUTO_MIN_EPOCHS`` epochs and ``AUTO_MIN_STEPS`` minibatch steps,
    at most ``AUTO_MAX_EPOCHS`` epochs.  A fixed epoch count gives a small data
    set too few optimiser steps (digits: 5 epochs of 6 batches of 256 are 30
    steps) and a large one more than it needs; a budget of steps gives each
    about the same optimisation.  Data sets of 100 or more batches an epoch keep
    ``AUTO_MIN_EPOCHS``, so their fit time does not grow.
    """
    n_batches = -(-n_samples // min(batch_size, n_samples))
    return min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, -(-AUTO_MIN_STEPS // n_batches)))


def _holdout(y, fraction, rng):
    """Indices (train, val) splitting off ``fraction`` of the samples.

    Stratified when every class allows it; both index arrays are sorted.
    """
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
    return np.flatnonzero(mask), val


def _copy_optimizer(opt):
    import copy

    return copy.deepcopy(opt)


def _copy_rng(rng):
    g = np.random.Generator(type(rng.bit_generator)())
    g.bit_generator.state = rng.bit_generator.state
    return g
