"""Model selection on training data only: splits, k-fold, kNN CV, linear search.

* :func:`train_val_split`, :func:`stratified_kfold` -- seeded, stratified splits.
* :func:`knn_cross_validate` -- kNN cross-validation with ONE neighbour search
  per fold and metric, every k and weighting scored from it; :func:`choose_best`
  picks a row by the documented rule (best mean; ties to the smaller k).
* :func:`linear_search` -- grid or random search of a linear model on a
  validation split.

None of these functions ever sees the test split: the pipeline
(:func:`imgcls.pipeline.run_study`) chooses with them, refits the chosen
configuration on the whole training split, and only then evaluates the test
split, once.
"""

from .knn_cv import choose_best, knn_cross_validate
from .linear_search import linear_search
from .splits import stratified_kfold, train_val_split

__all__ = ["train_val_split", "stratified_kfold", "knn_cross_validate", "choose_best",
           "linear_search"]
