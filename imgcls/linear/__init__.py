"""Linear classifiers: multiclass SVM and softmax, ``f(x; W, b) = W x + b``.

- :mod:`~imgcls.linear.losses` — vectorised losses and gradients (and the bias trick);
- :mod:`~imgcls.linear.reference` — the lecture's loop versions (test oracles);
- :mod:`~imgcls.linear.optim`, :mod:`~imgcls.linear.schedules` — update rules, learning rates;
- :mod:`~imgcls.linear.preprocess` — pixel scaling, mean image, standardisation;
- :mod:`~imgcls.linear.base` — the shared estimator API (parameters, fit, predict);
- :mod:`~imgcls.linear.trainer`, :mod:`~imgcls.linear.lbfgs` — the minibatch loop
  (early stopping, history, divergence) and the full-batch L-BFGS path;
- :class:`LinearSVM`, :class:`Softmax` — the estimators.
"""

from .losses import get_loss, softmax_loss, svm_loss
from .softmax import Softmax
from .svm import LinearSVM

__all__ = ["LinearSVM", "Softmax", "svm_loss", "softmax_loss", "get_loss"]
