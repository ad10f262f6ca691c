"""The softmax (multinomial logistic regression) classifier."""

from __future__ import annotations

from ._docs import COMMON_PARAMETERS
from .base import LinearClassifierBase
from .losses import softmax_proba


class Softmax(LinearClassifierBase):
    __doc__ = """Softmax classifier: ``mean_i -log softmax(s_i)[y_i] + reg ||W||^2``.

    Scores are ``s = W x' + b`` on preprocessed features ``x'``; the
    probabilities are their softmax (with the row maximum subtracted first, so
    no finite score overflows).  Same objective as scikit-learn's multinomial
    ``LogisticRegression`` with ``C = 1 / (2 * reg * n_samples)`` (scikit-learn
    minimises ``C * sum_i loss_i + ||W||^2 / 2``; divide by ``C * n``).

    Parameters
    ----------
""" + COMMON_PARAMETERS

    _loss = "softmax"

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), rows summing to 1."""
        return softmax_proba(self.class_scores(X))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably from the scores."""
        import numpy as np

        s = self.class_scores(X)
        s -= s.max(axis=1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=1, keepdims=True))
