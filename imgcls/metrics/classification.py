"""Top-k accuracy, per-class accuracy and the confusion matrix.

The confusion matrix is delegated to :func:`sklearn.metrics.confusion_matrix`
(a well-kept implementation); the functions here add the input checks imgcls
promises (clear errors naming the argument) and the ``n_classes`` contract, so a
class missing from a small test split still gets its row and column.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["top_k_accuracy", "per_class_accuracy", "confusion_matrix"]


def _labels_1d(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample")
    return y


def _class_indices(y, name: str, n_classes: int) -> np.ndarray:
    y = _labels_1d(y, name)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"{name} holds class indices outside 0..{n_classes - 1} "
                         f"(min {y.min()}, max {y.max()})")
    return y.astype(np.int64, copy=False)


def _check_n_classes(n_classes) -> int:
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    return int(n_classes)


def top_k_accuracy(y_true, ranked, k: int | None = None) -> float:
    """Fraction of samples whose true label is among the first ``k`` ranked labels.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    ranked : array-like of shape (n_samples, n_ranked)
        Predicted labels per sample, best first (e.g. ``predict_topk(X, n=5)``
        or ``vote_rank(...)``); ``ranked[:, 0]`` is the prediction.  A 1-D
        array is taken as one prediction per sample (``n_ranked = 1``).
    k : int, optional
        How many of the ranked labels count; must satisfy
        ``1 <= k <= n_ranked``.  Default: all ``n_ranked`` columns.

    Returns
    -------
    accuracy : float
        In [0, 1]; ``k=1`` is the ordinary accuracy.
    """
    y_true = _labels_1d(y_true, "y_true")
    ranked = np.asarray(ranked)
    if ranked.ndim == 1:
        ranked = ranked[:, None]
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be 2-D (n_samples, n_ranked), got shape {ranked.shape}")
    if ranked.shape[0] != y_true.shape[0]:
        raise ValueError(f"ranked has {ranked.shape[0]} rows but y_true has {y_true.shape[0]} samples")
    if k is None:
        k = ranked.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > ranked.shape[1]:
        raise ValueError(f"k={k} exceeds the {ranked.shape[1]} ranked labels given per sample")
    # A label appears at most once per row of a ranking, so "any" equals a count.
    hits = (ranked[:, :k] == y_true[:, None]).any(axis=1)
    return float(hits.mean())


def per_class_accuracy(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Accuracy within each true class (the recall of each class).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Class indices in ``0..n_classes-1``.
    n_classes : int

    Returns
    -------
    acc : ndarray of shape (n_classes,) float64
        ``acc[c]`` = fraction of samples of true class ``c`` predicted ``c``;
        NaN for a class with no sample in ``y_true`` (there is nothing to be
        accurate about, and 0 or 1 would be a silent wrong answer).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return acc.astype(np.float64)


def confusion_matrix(y_true, y_pred, n_classes: int, normalize: str | None = None) -> np.ndarray:
    """Confusion matrix: rows are true classes, columns predicted classes.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Class indices in ``0..n_classes-1``.
    n_classes : int
    normalize : {None, "true"}
        None: counts (int64).  "true": each row divided by its total, so a row
        holds the distribution of predictions for that true class (float64; a
        class absent from ``y_true`` gets a row of zeros).

    Returns
    -------
    cm : ndarray of shape (n_classes, n_classes)
    """
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    n_classes = _check_n_classes(n_classes)
    if normalize not in (None, "true"):
        raise ValueError(f"normalize must be None or 'true', got {normalize!r}")
    y_true = _class_indices(y_true, "y_true", n_classes)
    y_pred = _class_indices(y_pred, "y_pred", n_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape[0]} vs {y_pred.shape[0]}")
    with warnings.catch_warnings():
        # scikit-learn warns "a single label was found ... use labels" even when
        # labels ARE given (n_classes == 1); the shape is right, the warning noise
        warnings.simplefilter("ignore", UserWarning)
        cm = sk_confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)
    if normalize is None:
        return cm
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
