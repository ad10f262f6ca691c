"""Decision regions of classifiers on 2-D data, with kNN vote ties drawn white."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._base import as_array, class_color, new_figure

# Region colours are the class colours mixed with this much white, so that the
# pure white of a tie stands out and the training points (full colour) stay visible.
_REGION_WHITE = 0.6
# Two vote fractions closer than this are a tie (they are multiples of 1/k).
_TIE_ATOL = 1e-9


def _fresh(estimator: Any) -> Any:
    """An unfitted copy, so the caller's estimator is never changed."""
    if hasattr(estimator, "get_params"):
        from sklearn.base import clone

        # clone refuses objects that only look like estimators; deep-copy those
        with contextlib.suppress(TypeError, RuntimeError):
            return clone(estimator)
    return copy.deepcopy(estimator)


def _tie_mask(est: Any, P: np.ndarray) -> np.ndarray | None:
    """Where the best two class scores are equal, or None when the estimator has no scores.

    ``predict_proba`` is preferred (kNN vote fractions); ``decision_function`` is
    the fall-back (e.g. vote counts).  For linear models an exact tie only happens
    on the boundary itself, so applying the test to every estimator is harmless.
    """
    for method in ("predict_proba", "decision_function"):
        if not hasattr(est, method):
            continue
        try:
            scores = np.asarray(getattr(est, method)(P), dtype=np.float64)
        except (AttributeError, NotImplementedError):
            continue
        if scores.ndim == 1:  # binary decision_function: a tie is a score of exactly 0
            return np.abs(scores) <= _TIE_ATOL
        if scores.ndim == 2 and scores.shape[1] >= 2:
            top2 = np.partition(scores, -2, axis=1)[:, -2:]
            return np.abs(top2[:, 1] - top2[:, 0]) <= _TIE_ATOL
    return None


def _check_dataset(xname: str, yname: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = as_array(X, xname, ndim=(2,))
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{yname}: expected a 1-D array of labels, got shape {y.shape}")
    if X.shape[1] != 2:
        raise ValueError(f"{xname}: expected 2 features (n, 2), got shape {X.shape}")
    if len(X) != len(y):
        raise ValueError(f"{xname} and {yname}: lengths differ ({len(X)} points, "
                         f"{len(y)} labels)")
    if len(X) == 0:
        raise ValueError(f"{xname}: has no points")
    return X.astype(np.float64), y


def plot_decision_boundaries(estimators: Mapping[str, Any], X2d: Any = None, y: Any = None,
                             title: str = "Decision boundaries", resolution: int = 200, *,
                             datasets: Mapping[str, tuple[Any, Any]] | None = None,
                             X: Any = None, show_ties: bool = True) -> Figure:
    """Regions where each classifier predicts each class, on 2-D data.

    Draws a grid of panels: one row per data set, one column per estimator.
    Every estimator is copied (``sklearn.base.clone``, else ``copy.deepcopy``)
    and fitted to each data set; the caller's objects are not changed.  Each
    panel colours a ``resolution x resolution`` grid of points by predicted class
    and overlays the training points.  Where the estimator can score classes
    (``predict_proba``, else ``decision_function``) the points whose best two
    scores are equal -- a kNN vote tie -- are drawn white, as in the lecture.

    For example, the lecture's figure::

        est = {f"kNN K={k}": KNearestNeighbor(k=k, metric="l2") for k in (1, 3, 5)}
        est |= {"SVM": LinearSVM(), "softmax": Softmax()}
        fig = plot_decision_boundaries(est, datasets=toy_datasets())

    Parameters
    ----------
    estimators : dict of str -> estimator
        Duck-typed: ``fit(X, y)`` and ``predict(X)``, optionally
        ``predict_proba`` / ``decision_function``.  Keys label the columns.
    X2d : array of shape (n, 2), optional
        One data set (use ``datasets`` for several).  ``X`` is accepted as an alias.
    y : array of shape (n,), optional
        Its labels (any sortable type).
    title : str
    resolution : int, default 200
        Grid points per axis (10..2000).
    datasets : dict of str -> (X, y), optional
        Several data sets, e.g. :func:`toy_datasets()`; keys label the rows.
    X : array of shape (n, 2), optional
        Alias of ``X2d``.
    show_ties : bool, default True
        Draw vote ties white.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``n_datasets * n_estimators`` axes, each with one region image; the
        training accuracy is written in each panel's corner.

    Raises
    ------
    ValueError
        No estimator, an object without ``fit``/``predict``, both or neither of
        ``X2d`` and ``datasets``, points that are not (n, 2), lengths that differ,
        or a bad ``resolution``.
    """
    if not isinstance(estimators, Mapping) or len(estimators) == 0:
        raise ValueError("estimators: expected a non-empty dict of name -> estimator")
    for name, est in estimators.items():
        if not (callable(getattr(est, "fit", None)) and callable(getattr(est, "predict", None))):
            raise ValueError(f"estimators[{name!r}]: has no fit/predict methods "
                             f"({type(est).__name__})")
    if X is not None:
        if X2d is not None:
            raise ValueError("X and X2d: give the points once (X is an alias of X2d)")
        X2d = X
    if (X2d is None) == (datasets is None):
        raise ValueError("X2d and datasets: give either one data set (X2d, y) or datasets, "
                         "not both or neither")
    if datasets is None:
        if y is None:
            raise ValueError("y: the labels of X2d are missing")
        sets = {None: _check_dataset("X2d", "y", X2d, y)}
    else:
        if not isinstance(datasets, Mapping) or len(datasets) == 0:
            raise ValueError("datasets: expected a non-empty dict of name -> (X, y)")
        sets = {}
        for dname, pair in datasets.items():
            try:
                Xd, yd = pair
            except (TypeError, ValueError):
                raise ValueError(f"datasets[{dname!r}]: expected a pair (X, y)") from None
            sets[str(dname)] = _check_dataset(f"datasets[{dname!r}] X", f"datasets[{dname!r}] y",
                                               Xd, yd)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or not 10 <= resolution <= 2000:
        raise ValueError(f"resolution: must be an integer in 10..2000, got {resolution!r}")

    n_rows, n_cols = len(sets), len(estimators)
    fig = new_figure(2.7 * n_cols + 0.5, 2.7 * n_rows + 0.6)
    for r, (dname, (Xd, yd)) in enumerate(sets.items()):
        labels, yi = np.unique(yd, return_inverse=True)
        lo, hi = Xd.min(axis=0), Xd.max(axis=0)
        pad = 0.08 * np.maximum(hi - lo, 1e-9)
        lo, hi = lo - pad, hi + pad
        gx = np.linspace(lo[0], hi[0], int(resolution))
        gy = np.linspace(lo[1], hi[1], int(resolution))
        xx, yy = np.meshgrid(gx, gy)
        P = np.column_stack([xx.ravel(), yy.ravel()])
        region_colors = np.array([class_color(i) * (1 - _REGION_WHITE) + _REGION_WHITE
                                  for i in range(len(labels))])
        for c, (ename, est) in enumerate(estimators.items()):
            model = _fresh(est)
            model.fit(Xd, yd)
            pred = np.asarray(model.predict(P))
            pi = np.searchsorted(labels, pred)
            pi = np.clip(pi, 0, len(labels) - 1)
            if not np.all(labels[pi] == pred):
                raise ValueError(f"estimators[{ename!r}]: predicted labels that are not in y")
            rgb = region_colors[pi]
            if show_ties:
                ties = _tie_mask(model, P)
                if ties is not None:
                    rgb[ties] = 1.0
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            ax.imshow(rgb.reshape(len(gy), len(gx), 3), origin="lower", interpolation="nearest",
                      extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto")
            ax.scatter(Xd[:, 0], Xd[:, 1], c=[class_color(i) for i in yi], s=12,
                       edgecolors="black", linewidths=0.4)
            acc = float(np.mean(np.asarray(model.predict(Xd)) == yd))
            ax.text(0.98, 0.02, f"train acc {acc:.2f}", transform=ax.transAxes, ha="right",
                    va="bottom", fontsize="x-small",
                    bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(ename))
            if c == 0 and dname is not None:
                ax.set_ylabel(dname)
    # say what white means, unless the caller's title already does
    note = show_ties and "white" not in title.lower()
    fig.suptitle(title + ("  (white: tied vote)" if note else ""))
    return fig
