"""The study's figures, built from its fitted models and results.

Keys of the returned dict are stable names the report shows in order:
``cv_curve``, ``retrievals``, ``templates_<model>``, ``training_<model>``,
``confusion_<model>``, ``decision_boundaries``.
"""

from __future__ import annotations

import numpy as np

from .estimators import make_estimator

__all__ = ["study_figures", "retrieval_queries"]

#: Test images shown in the retrieval figure, and neighbours per image.
N_RETRIEVALS = 8
N_RETRIEVED = 10
#: Grid points per axis of the decision-region pictures (enough to see the shapes;
#: the kNN search over the grid dominates their cost).
BOUNDARY_RESOLUTION = 120
#: Linear models on the toy sets (the same for every data set studied).
TOY_LINEAR_PARAMS = {"epochs": 100, "learning_rate": 0.1, "random_state": 0}


def retrieval_queries(n_test: int, seed: int, n: int = N_RETRIEVALS) -> np.ndarray:
    """Indices of the test images shown with their neighbours (seeded, sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_test, size=min(n, n_test), replace=False))


def study_figures(ds, fitted: dict, results: dict, cv_table: list[dict] | None, seed: int,
                  progress_step=lambda name: None) -> dict:
    """Draw every figure of a study.

    Parameters
    ----------
    ds : Dataset
    fitted : dict of model name -> fitted estimator (on the whole training split)
    results : dict
        The study's ``results["models"]`` (for the confusion matrices).
    cv_table : list of dict or None
        The kNN cross-validation table.
    seed : int
    progress_step : callable
        Called with each figure's name before it is drawn.

    Returns
    -------
    figures : dict of str -> matplotlib Figure
    """
    from .. import plots

    figures = {}
    image_input = ds.X_train.ndim == 4
    if cv_table:
        progress_step("cv_curve")
        figures["cv_curve"] = plots.plot_cv_curve(
            cv_table, title=f"kNN cross-validation on {ds.name}")
    knn = fitted.get("knn")
    if knn is not None and image_input and len(ds.y_test):
        progress_step("retrievals")
        q = retrieval_queries(len(ds.y_test), seed)
        n_nb = min(N_RETRIEVED, len(ds.y_train))
        _, ind = knn.kneighbors(ds.X_test[q], n_neighbors=n_nb)
        figures["retrievals"] = plots.plot_retrievals(
            ds.X_test[q], ds.y_test[q], ds.X_train, ds.y_train, ind, ds.classes,
            n_neighbors=n_nb, title=f"Test images and their {n_nb} nearest training images "
                                    f"({knn.metric})")
    for name in ("svm", "softmax"):
        model = fitted.get(name)
        if model is None:
            continue
        label = "Linear SVM" if name == "svm" else "Softmax"
        progress_step(f"templates_{name}")
        figures[f"templates_{name}"] = plots.plot_templates(
            model.templates_, ds.classes, title=f"{label}: learned templates")
        if getattr(model, "history_", None):
            progress_step(f"training_{name}")
            figures[f"training_{name}"] = plots.plot_training_curves(
                model.history_, title=f"{label}: training curves (final fit)")
    for name, res in results.items():
        progress_step(f"confusion_{name}")
        figures[f"confusion_{name}"] = plots.plot_confusion(
            np.asarray(res["confusion"]), ds.classes, normalize=True,
            title=f"{name}: confusion matrix on the test split (row-normalised)")
    progress_step("decision_boundaries")
    toy = {}
    if "knn" in fitted:
        toy.update({f"kNN K={k}": make_estimator("knn", {"k": k, "metric": "l2"})
                    for k in (1, 3, 5)})
    for name, label in (("svm", "linear SVM"), ("softmax", "softmax")):
        if name in fitted:
            # 200 points are one minibatch per epoch: more epochs and a larger rate than
            # on images, so the pictures show converged linear boundaries (~0.05 s each)
            toy[label] = make_estimator(name, TOY_LINEAR_PARAMS)
    if toy:
        figures["decision_boundaries"] = plots.plot_decision_boundaries(
            toy, datasets=plots.toy_datasets(seed),
            title="Decision regions on 2-D toy data (white: kNN vote ties)",
            resolution=BOUNDARY_RESOLUTION)
    return figures
