"""Lecture-style loop implementations of the losses: slow, obvious, test oracles.

These follow the course's naive versions line by line (explicit loops over
samples and classes) so that the vectorised code in :mod:`imgcls.linear.losses`
can be checked against something that is easy to read.  Same conventions:
mean data loss + ``reg * sum(W**2)``, explicit bias ``b``, ``W`` of shape
(n_classes, n_features).
"""

from __future__ import annotations

import math

import numpy as np


def svm_loss_naive(W, b, X, y, reg, delta=1.0):
    """Multiclass SVM loss and gradients with explicit loops.

    Parameters
    ----------
    W : ndarray of shape (n_classes, n_features)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) int class indices
    reg : float
    delta : float

    Returns
    -------
    loss : float
    dW : ndarray of shape (n_classes, n_features), float64
    db : ndarray of shape (n_classes,), float64
    """
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    n_classes = W.shape[0]
    n = X.shape[0]
    dW = np.zeros_like(W)
    db = np.zeros(n_classes)
    loss = 0.0
    for i in range(n):
        scores = W @ X[i] + b
        correct = scores[y[i]]
        for j in range(n_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct + delta
            if margin > 0:
                loss += margin
                dW[j] += X[i]
                db[j] += 1
                dW[y[i]] -= X[i]
                db[y[i]] -= 1
    loss /= n
    dW /= n
    db /= n
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return float(loss), dW, db


def softmax_loss_naive(W, b, X, y, reg):
    """Softmax cross-entropy loss and gradients with explicit loops.

    Uses the max shift per sample (the lecture's numeric-stability trick).

    Parameters
    ----------
    W : ndarray of shape (n_classes, n_features)
    b : ndarray of shape (n_classes,)
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) int class indices
    reg : float

    Returns
    -------
    loss : float
    dW : ndarray of shape (n_classes, n_features), float64
    db : ndarray of shape (n_classes,), float64
    """
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    n_classes = W.shape[0]
    n = X.shape[0]
    dW = np.zeros_like(W)
    db = np.zeros(n_classes)
    loss = 0.0
    for i in range(n):
        scores = [float(W[j] @ X[i] + b[j]) for j in range(n_classes)]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        loss += -(scores[y[i]] - top - math.log(total))
        for j in range(n_classes):
            p = exps[j] / total
            g = p - (1.0 if j == y[i] else 0.0)
            dW[j] += g * X[i]
            db[j] += g
    loss /= n
    dW /= n
    db /= n
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return float(loss), dW, db


def numeric_gradient(f, x, h=1e-5):
    """Centred-difference gradient of the scalar function ``f`` at ``x`` (modified in place, restored).

    ``df/dx_k ~ (f(x + h e_k) - f(x - h e_k)) / (2 h)``, whose error is O(h^2).
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        k = it.multi_index
        old = x[k]
        x[k] = old + h
        fp = f()
        x[k] = old - h
        fm = f()
        x[k] = old
        grad[k] = (fp - fm) / (2 * h)
    return grad
