"""Vectorised multiclass SVM and softmax losses with their analytic gradients.

The score function is ``f(x; W, b) = W x + b`` with ``W`` of shape
(n_classes, n_features) and an explicit bias ``b`` of shape (n_classes,).

The bias trick
--------------
The lecture folds ``b`` into ``W`` by appending a constant 1 to every ``x``
(``W' = [W | b]``, ``x' = [x, 1]``, so ``f = W' x'``).  imgcls keeps ``b``
explicit instead: the two are the same model, but an explicit ``b`` avoids
copying the whole data matrix to append a column, and makes it obvious that
the L2 penalty ``reg * sum(W**2)`` applies to ``W`` only, never to the bias
(penalising the bias would pull every class score towards zero for no reason).

Conventions
-----------
Every loss is the *mean* data loss over the N samples plus ``reg * sum(W**2)``;
its gradient with respect to ``W`` therefore contains ``2 * reg * W``.  Labels
``y`` are class *indices* in ``0 .. n_classes - 1``.  The arithmetic runs in the
floating dtype of ``X``/``W`` (float32 in training for speed, float64 in the
gradient checks).

The ``*_from_scores`` functions take the (N, C) score matrix and return the mean
data loss and ``dL/dscores``; the estimators use them between their own two
matrix products per minibatch (``X @ W.T`` and ``dscores.T @ X``), and the
public ``svm_loss`` / ``softmax_loss`` compose the same pieces.
"""

from __future__ import annotations

import numpy as np


def _check_labels(scores, y):
    n, c = scores.shape
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match the scores, got {y.shape}")
    if n and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels y must be class indices in 0..{c - 1}, "
                         f"got values in {int(y.min())}..{int(y.max())}")
    return y


def svm_from_scores(scores, y, delta=1.0):
    """Multiclass (Weston-Watkins) hinge loss from class scores.

    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)``, averaged over rows.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes)
    y : ndarray of shape (n_samples,) of int class indices
    delta : float
        The margin the correct class score must exceed the others by.

    Returns
    -------
    loss : float
        Mean data loss (no regularisation).
    dscores : ndarray of shape (n_samples, n_classes), dtype of ``scores``
        Gradient of the mean loss with respect to ``scores``.  At a kink
        (a margin exactly 0) the subgradient 0 is taken.
    """
    y = _check_labels(scores, y)
    n = scores.shape[0]
    rows = np.arange(n)
    correct = scores[rows, y]
    margins = scores - correct[:, None]
    margins += scores.dtype.type(delta)
    np.maximum(margins, 0, out=margins)
    margins[rows, y] = 0
    loss = float(margins.sum(dtype=np.float64)) / n
    # Each violated margin adds +1 to its class and -1 to the correct class.
    dscores = (margins > 0).astype(scores.dtype)
    dscores[rows, y] = -dscores.sum(axis=1)
    dscores /= n
    return loss, dscores


def softmax_from_scores(scores, y):
    """Softmax cross-entropy loss from class scores, numerically stable.

    The row maximum is subtracted before exponentiating (it cancels in the
    ratio), so no finite input overflows; ``log p`` is computed as
    ``shifted - log(sum(exp(shifted)))`` rather than ``log`` of a probability
    that may have underflowed to 0.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_classes)
    y : ndarray of shape (n_samples,) of int class indices

    Returns
    -------
    loss : float
        Mean cross-entropy (no regularisation).
    dscores : ndarray of shape (n_samples, n_classes), dtype of ``scores``
        ``(softmax(scores) - onehot(y)) / n_samples``.
    """
    y = _check_labels(scores, y)
    n = scores.shape[0]
    rows = np.arange(n)
    top = scores.max(axis=1, keepdims=True)
    # A score range wider than the float range overflows the shift to -inf,
    # whose exp is the correct 0: harmless, so the warning is silenced.
    with np.errstate(over="ignore"):
        shifted = scores - top
    probs = np.exp(shifted)
    sums = probs.sum(axis=1)
    # The picked log-probability is taken in float64 from the unshifted score, so
    # a float32 loss above the float32 range (a diverging run) is still a finite
    # number; only a true loss beyond the float64 range becomes inf, never NaN.
    picked = scores[rows, y].astype(np.float64) - top[:, 0].astype(np.float64)
    loss = float((np.log(sums, dtype=np.float64) - picked).sum()) / n
    probs /= sums[:, None]
    probs[rows, y] -= 1
    probs /= n
    return loss, probs


def _loss_and_grads(from_scores, W, b, X, y, reg, **kw):
    W = np.asarray(W)
    X = np.asarray(X)
    b = np.asarray(b)
    if W.ndim != 2 or X.ndim != 2 or W.shape[1] != X.shape[1]:
        raise ValueError(f"W must be (n_classes, n_features) and X (n_samples, n_features) "
                         f"with the same n_features; got W {W.shape}, X {X.shape}")
    if b.shape != (W.shape[0],):
        raise ValueError(f"b must have shape ({W.shape[0]},), got {b.shape}")
    if not reg >= 0:
        raise ValueError(f"reg must be >= 0, got {reg!r}")
    scores = X @ W.T
    scores += b
    data_loss, dscores = from_scores(scores, y, **kw)
    loss = data_loss + reg * float(np.sum(W * W, dtype=np.float64))
    dW = dscores.T @ X
    dW += (2 * reg) * W
    db = dscores.sum(axis=0)
    return loss, dW, db


def svm_loss(W, b, X, y, reg, delta=1.0):
    """Multiclass SVM loss ``mean_i L_i + reg * sum(W**2)`` and its gradients.

    Parameters
    ----------
    W : ndarray of shape (n_classes, n_features)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int class indices
    reg : float
        L2 regularisation strength (on ``W`` only).
    delta : float, default=1.0
        Hinge margin.

    Returns
    -------
    loss : float
    dW : ndarray of shape (n_classes, n_features)
    db : ndarray of shape (n_classes,)
    """
    return _loss_and_grads(svm_from_scores, W, b, X, y, reg, delta=delta)


def softmax_loss(W, b, X, y, reg):
    """Softmax cross-entropy loss ``mean_i -log p_{y_i} + reg * sum(W**2)`` and its gradients.

    Parameters
    ----------
    W : ndarray of shape (n_classes, n_features)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int class indices
    reg : float
        L2 regularisation strength (on ``W`` only).

    Returns
    -------
    loss : float
    dW : ndarray of shape (n_classes, n_features)
    db : ndarray of shape (n_classes,)
    """
    return _loss_and_grads(softmax_from_scores, W, b, X, y, reg)


def softmax_proba(scores):
    """Row-wise softmax of ``scores`` (n, C), stable for any finite input."""
    with np.errstate(over="ignore"):  # -inf shifts give the correct exp of 0
        shifted = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    return p


LOSSES = {"svm": svm_loss, "softmax": softmax_loss}
SCORE_LOSSES = {"svm": svm_from_scores, "softmax": softmax_from_scores}


def get_loss(name):
    """The vectorised loss function called ``name`` ("svm" or "softmax")."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
