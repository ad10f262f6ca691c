"""The study behind ``imgcls run``: load -> select -> final fit -> evaluate -> figures -> report.

* :func:`run_study` -- the whole study (see :mod:`imgcls.pipeline.study` for the
  protocol that keeps the test split apart).
* :func:`make_estimator`, :func:`parse_models` -- model names to estimators.
* :func:`evaluate_model`, :func:`rank_labels` -- the one test evaluation.
* :func:`read_image_for_model` -- an image file in a model's input shape
  (``imgcls predict``).
"""

from .estimators import MODEL_NAMES, make_estimator, parse_models
from .evaluate import class_scores, evaluate_model, rank_labels
from .images import read_image_for_model
from .study import run_study

__all__ = ["run_study", "MODEL_NAMES", "make_estimator", "parse_models", "evaluate_model",
           "rank_labels", "class_scores", "read_image_for_model"]
