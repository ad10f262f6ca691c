"""The multiclass SVM (Weston-Watkins hinge) classifier."""

from __future__ import annotations

from numbers import Real

import numpy as np

from .._validation import Interval
from ._docs import COMMON_PARAMETERS
from .base import LinearClassifierBase


class LinearSVM(LinearClassifierBase):
    __doc__ = """Multiclass linear SVM: ``mean_i sum_{j != y_i} max(0, s_j - s_{y_i} + delta) + reg ||W||^2``.

    Scores are ``s = W x' + b`` on preprocessed features ``x'``.  This is the
    true multiclass hinge (one loss over all classes), not one-vs-rest.

    Parameters
    ----------
    delta : float, default=1.0
        The margin by which the correct class score should beat every other.
""" + COMMON_PARAMETERS

    _loss = "svm"
    _parameter_constraints = {**LinearClassifierBase._parameter_constraints,
                              "delta": [Interval(Real, 0, np.inf, closed="neither")]}

    def __init__(self, learning_rate=0.03, reg=1e-4, epochs="auto", batch_size=256,
                 optimizer="adam", momentum=0.9, schedule="cosine", step_size=5, gamma=0.5,
                 delta=1.0, scale="auto", center=True, standardize=False, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=3, tol=1e-4, random_state=None,
                 verbose=False):
        super().__init__(learning_rate=learning_rate, reg=reg, epochs=epochs,
                         batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                         schedule=schedule, step_size=step_size, gamma=gamma, scale=scale,
                         center=center, standardize=standardize, early_stopping=early_stopping,
                         validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, tol=tol, random_state=random_state,
                         verbose=verbose)
        self.delta = delta

    def _loss_params(self):
        return {"delta": float(self.delta)}
