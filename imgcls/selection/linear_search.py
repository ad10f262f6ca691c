"""Grid or random search of a linear classifier's hyperparameters on a validation split.

Each configuration is fitted on the training part and scored on the
validation part (both cut from the *training* split; the test split never comes
here).  Parameter sets come from scikit-learn's ``ParameterGrid`` /
``ParameterSampler``, so ``param_distributions`` may hold lists or scipy.stats
distributions (e.g. ``loguniform(1e-4, 1e-1)`` for a learning rate).

A configuration whose training diverges (:class:`~imgcls.errors.TrainingDivergedError`,
typically a learning rate too high) is recorded in the table as diverged and
skipped -- that is a finding of the search, not a user error; only when every
configuration diverges is it an error.
"""

from __future__ import annotations

import time

import numpy as np

from .._progress import track
from .._validation import check_grid_points
from ..errors import ConfigError, TrainingDivergedError
from .splits import check_seed, train_val_split

__all__ = ["linear_search"]


def _param_sets(estimator, param_grid, param_distributions, n_iter, seed) -> list[dict]:
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if (param_grid is None) == (param_distributions is None):
        raise ConfigError("give exactly one of param_grid and param_distributions")
    try:
        if param_grid is not None:
            if n_iter is not None:
                raise ConfigError("n_iter applies to a random search (param_distributions), "
                                  "not to param_grid")
            sets = list(ParameterGrid(param_grid))
        else:
            if n_iter is None or isinstance(n_iter, bool) or not isinstance(n_iter, int) \
                    or n_iter < 1:
                raise ConfigError(f"a random search needs n_iter >= 1, got {n_iter!r}")
            sets = list(ParameterSampler(param_distributions, n_iter=n_iter, random_state=seed))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid parameter grid: {exc}") from None
    if not sets or sets == [{}]:
        raise ConfigError("the parameter grid is empty")
    valid = estimator.get_params()
    for params in sets:
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown} for {type(estimator).__name__}; "
                              f"valid: {sorted(valid)}")
    # every value through the estimator's own constraints, before any time is spent fitting
    check_grid_points(estimator, sets)
    return sets


def _to_json(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fit_and_score(params, *, estimator, seed_key, seed, X_tr, y_tr, X_val, y_val) -> dict:
    """One row of the search table: fit a clone with ``params``, score it on validation.

    A top-level function of its arguments alone, so a Dask worker can run it.
    """
    from sklearn.base import clone

    model = clone(estimator)
    if seed_key is not None and seed_key not in params:
        model.set_params(**{seed_key: seed})
    model.set_params(**params)
    row = {k: _to_json(v) for k, v in params.items()}
    row["params"] = dict(row)
    t0 = time.perf_counter()
    try:
        model.fit(X_tr, y_tr, X_val=X_val, y_val=y_val)
    except TrainingDivergedError as exc:
        row.update(val_acc=None, train_acc=None, fit_time=time.perf_counter() - t0,
                   epochs_run=None, diverged=True, error=str(exc).splitlines()[0])
        return row
    fit_time = time.perf_counter() - t0
    history = getattr(model, "history_", None) or []
    last = history[-1] if history else {}
    row.update(val_acc=float(model.score(X_val, y_val)),
               train_acc=None if last.get("train_acc") is None else float(last["train_acc"]),
               fit_time=fit_time, epochs_run=len(history) or None, diverged=False)
    return row


def linear_search(estimator, X, y, param_grid: dict | list | None = None, *,
                  param_distributions: dict | None = None, n_iter: int | None = None,
                  X_val=None, y_val=None, val_size: float | int = 0.2, seed: int = 0,
                  progress: bool | None = None, client=None) -> tuple[list[dict], dict]:
    """Fit ``estimator`` for each parameter set and score it on validation data.

    Parameters
    ----------
    estimator : LinearSVM or Softmax (any estimator with ``fit(X, y, X_val, y_val)``
        and ``score``)
        A template; it is cloned for every configuration and left unchanged.
    X : array-like of shape (n_samples, H, W, C) or (n_samples, n_features)
        Training data (the training split, never the test split).
    y : array-like of shape (n_samples,)
    param_grid : dict or list of dict, optional
        A grid, e.g. ``{"learning_rate": [1e-3, 1e-2], "reg": [1e-4, 1e-3], "epochs": [20]}``.
    param_distributions : dict, optional
        For a random search instead: lists or scipy.stats distributions per parameter.
    n_iter : int, optional
        Number of random draws (random search only).
    X_val, y_val : array-like, optional
        A validation set.  Without it, :func:`train_val_split` cuts ``val_size``
        of ``(X, y)`` with ``seed``.
    val_size : float or int
    seed : int
        Seed of the split, of the random draws and of each fit (set as the
        estimator's ``random_state`` / ``seed`` parameter when it has one and
        the grid does not set it).
    progress : bool, optional
    client : distributed.Client, optional
        Fit each configuration on this Dask cluster (the data are scattered
        once); the table, but for ``fit_time``, is identical to a local run's.

    Returns
    -------
    table : list of dict
        One row per configuration, in search order: ``{"params": {...},
        "val_acc": float or None, "train_acc": float or None, "fit_time": s,
        "epochs_run": int or None, "diverged": bool}``, plus each parameter as
        its own key.
    best_params : dict
        The parameters of the row with the highest ``val_acc``; ties go to the
        first such row in search order (``ParameterGrid`` order: keys sorted,
        the last key varying fastest).

    Raises
    ------
    ConfigError
        An unknown parameter name, a grid point the estimator's
        ``_parameter_constraints`` refuse (checked for every point before any
        fitting; the message names the point, the parameter and what is
        allowed), both or neither of ``param_grid``/``param_distributions``, or
        every configuration diverged.
    """
    seed = check_seed(seed)
    sets = _param_sets(estimator, param_grid, param_distributions, n_iter, seed)
    if (X_val is None) != (y_val is None):
        raise ConfigError("give both X_val and y_val, or neither")
    if X_val is None:
        X_tr, X_val, y_tr, y_val = train_val_split(X, y, val_size=val_size, seed=seed)
    else:
        X_tr, y_tr = X, y
    seed_key = next((p for p in ("random_state", "seed") if p in estimator.get_params()), None)

    from ..distributed.tasks import run_tasks

    fits = run_tasks(_fit_and_score, [(params,) for params in sets],
                     shared={"estimator": estimator, "seed_key": seed_key, "seed": seed,
                             "X_tr": X_tr, "y_tr": y_tr, "X_val": X_val, "y_val": y_val},
                     client=client)
    table = list(track(fits, f"search {type(estimator).__name__}", total=len(sets),
                       disable=None if progress is None else not progress))

    ok = [r for r in table if not r["diverged"]]
    if not ok:
        raise ConfigError(f"every configuration of {type(estimator).__name__} diverged "
                          f"({len(table)} tried); lower the learning rates in the grid")
    best = max(ok, key=lambda r: r["val_acc"])  # max keeps the first of equal values
    return table, dict(best["params"])
