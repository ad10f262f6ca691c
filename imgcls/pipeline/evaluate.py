"""Ranking labels with any of the three estimators, and the test-split evaluation."""

from __future__ import annotations

import time

import numpy as np

from ..metrics import confusion_matrix, per_class_accuracy, top_k_accuracy

__all__ = ["rank_labels", "class_scores", "evaluate_model"]


def rank_labels(model, X, n: int = 5) -> np.ndarray:
    """Labels best first, shape (n_samples, min(n, n_classes)).

    kNN ranks with ``predict_topk`` (its vote tie rule); linear models by
    decreasing ``decision_function`` (ties to the smaller class index, by a
    stable sort), so column 0 equals ``predict``; two-class models are ranked
    from both classes' scores.
    """
    n = min(int(n), len(model.classes_))
    if hasattr(model, "predict_topk"):
        return np.asarray(model.predict_topk(X, n=n))
    scores = _all_class_scores(model, X)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return np.asarray(model.classes_)[order]


def class_scores(model, X) -> tuple[np.ndarray, str]:
    """Per-class scores (n_samples, n_classes) and what they are, for printing.

    ``predict_proba`` where the model has one (kNN: ``"vote_share"``, the
    weighted fraction of the k votes; softmax: ``"probability"``), else
    ``decision_function`` (SVM: ``"score"``, the class margins).
    """
    if hasattr(model, "predict_proba") and hasattr(model, "kneighbors"):
        return np.asarray(model.predict_proba(X), dtype=np.float64), "vote_share"
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X), dtype=np.float64), "probability"
    return _all_class_scores(model, X), "score"


def _all_class_scores(model, X) -> np.ndarray:
    # (n, n_classes) even for two classes, where decision_function follows
    # scikit-learn and returns one column of differences
    if hasattr(model, "class_scores"):
        return np.asarray(model.class_scores(X), dtype=np.float64)
    scores = np.asarray(model.decision_function(X), dtype=np.float64)
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


def evaluate_model(model, X_test, y_test, n_classes: int, top: int = 5) -> dict:
    """Evaluate a fitted model on the test split, once.

    Parameters
    ----------
    model : fitted estimator
        Trained on class indices ``0..n_classes-1``.
    X_test : array of shape (n_test, ...)
    y_test : array of shape (n_test,) int
    n_classes : int
    top : int
        The k of the top-k accuracy (clipped to ``n_classes``).

    Returns
    -------
    dict
        ``test_top1``, ``test_top5`` (top-``top``), ``per_class_accuracy``
        (list, None for a class absent from the test split), ``confusion``
        (counts, list of lists), ``confusion_normalized`` (rows sum to 1),
        ``predict_time`` (s, ranking the whole test split), ``y_pred`` (ndarray;
        the caller drops it before JSON).
    """
    t0 = time.perf_counter()
    ranked = rank_labels(model, X_test, top)
    predict_time = time.perf_counter() - t0
    y_pred = ranked[:, 0].astype(np.int64)
    cm = confusion_matrix(y_test, y_pred, n_classes)
    per_class = per_class_accuracy(y_test, y_pred, n_classes)
    return {
        "test_top1": top_k_accuracy(y_test, ranked, 1),
        f"test_top{top}": top_k_accuracy(y_test, ranked, ranked.shape[1]),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion": cm.tolist(),
        "confusion_normalized": confusion_matrix(y_test, y_pred, n_classes, "true").tolist(),
        "predict_time": predict_time,
        "y_pred": y_pred,
    }
