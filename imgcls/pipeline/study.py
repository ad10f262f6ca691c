"""The whole study: load -> select -> final fit -> evaluate -> figures -> report.

How the test split is kept apart (the honest protocol):

1. Hyperparameters are chosen on the TRAINING split only: kNN by k-fold
   cross-validation (:func:`imgcls.selection.knn_cross_validate`, the choice by
   :func:`imgcls.selection.choose_best`), the linear models on a stratified
   validation split cut from the training split
   (:func:`imgcls.selection.linear_search`).
2. The chosen configuration of each model is refitted on the WHOLE training
   split (kNN: all training images are the neighbours; linear: trained again
   on training + validation part, with the chosen learning rate,
   regularisation and epochs).
3. Only then is the test split used, once per model: top-1/top-5 accuracy,
   per-class accuracy, confusion matrix, prediction time.  Nothing computed on
   the test split feeds back into a choice.

With ``features=`` (``imgcls run --features pixels,hog+color``) step 1 uses
one stratified validation split of the training split (``FEATURE_VAL_SIZE``)
for every model, and each feature set is fitted on its training part alone
(:func:`imgcls.pipeline.features.extract_features`): k-means centroids and
whitening never see a validation or test row, and each classifier standardises
on the rows it is fitted on.  k-fold cross-validation would need one feature
fit per fold, which for k-means features costs as much as the rest of the
study.  All images are then transformed with that fit, steps 2-3 run on the
feature rows, and the saved model is the whole pipeline (features, then
classifier).  The feature rows of the training split are laid out as the
split's training part then its validation part, each in a stratified-prefix
order (:func:`imgcls.selection.splits.stratified_order`): the searches' subsets
are then row slices, views of the feature matrix rather than copies of it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._progress import bar
from .._version import __version__
from ..errors import ConfigError
from ..selection import choose_best, knn_cross_validate, linear_search, stratified_kfold
from ..selection.knn_cv import check_ks
from ..selection.splits import check_seed
from . import grids
from .estimators import MODEL_NAMES, make_estimator, parse_models
from .evaluate import evaluate_model

__all__ = ["run_study", "check_out_dir", "jsonable", "FEATURE_VAL_SIZE"]

#: Share of the training split held out for model selection when features are
#: learned (the linear search's default validation share, so that without
#: features the linear models see the same proportions)
FEATURE_VAL_SIZE = 0.2


def check_out_dir(out) -> Path:
    """Fail early, before any work, when ``out`` cannot become a writable directory.

    Nothing is created here: the directory is made only when the results are
    written, so a study that fails leaves nothing behind.

    Raises
    ------
    ConfigError
        ``out`` (or a parent) exists and is not a directory.
    PermissionError
        The nearest existing directory cannot be written.
    """
    out = Path(out).expanduser()
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"output directory {out}: {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory {out}: {probe} is not writable")
    # os.access says yes to root everywhere (and to anyone on some file
    # systems, e.g. /proc): try to create, then remove, an empty directory
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".imgcls-probe-", dir=probe))
    except OSError as exc:
        raise PermissionError(f"output directory {out}: cannot create anything in {probe} "
                              f"({exc.strerror or exc})") from exc
    return out


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays -> Python; NaN/inf -> None; tuples -> lists (recursively)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _subset(X, y, n_max: int, seed: int):
    """A stratified subset of at most ``n_max`` samples (all of them when smaller)."""
    if len(y) <= n_max:
        return X, y
    from sklearn.model_selection import train_test_split

    _, X_s, _, y_s = train_test_split(X, y, test_size=n_max, random_state=seed, stratify=y)
    return X_s, y_s


def _holdout_split(y, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation positions of the feature sets' selection split."""
    from ..selection.splits import train_val_split

    tr, va, _, _ = train_val_split(np.arange(len(y)), y, val_size=FEATURE_VAL_SIZE, seed=seed)
    return np.sort(tr), np.sort(va)


def _selection_order(y, tr, va, seed: int) -> np.ndarray:
    """The training rows' order for the feature matrix: ``tr`` then ``va``, each stratified-prefix.

    Every subset the selection takes (the kNN's, the linear search's) is then
    the first rows of a part: a slice of the feature matrix, not a copy.
    """
    from ..selection.splits import stratified_order

    y = np.asarray(y)
    return np.concatenate([tr[stratified_order(y[tr], seed)], va[stratified_order(y[va], seed)]])


def _seeded(est, seed: int):
    for key in ("random_state", "seed"):
        if key in est.get_params():
            return est.set_params(**{key: seed})
    return est


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _select_knn(ds, folds, seed, grid, log, progress, client=None, holdout=None):
    n_max = grid.get("max_samples", grids.CV_MAX_SAMPLES)
    if holdout is not None:
        return _select_knn_holdout(ds, holdout, n_max, seed, grid, log, progress, client)
    X_cv, y_cv = _subset(ds.X_train, ds.y_train, n_max, seed)
    splits = stratified_kfold(y_cv, folds, seed)
    ks, metrics, weights = _knn_grid(grid, ds.X_train, min(tr.size for tr, _ in splits))
    log(f"kNN: {folds}-fold cross-validation on {len(y_cv)} training samples, "
        f"k in {ks}, metrics {list(metrics)}, weights {list(weights)}")
    table = knn_cross_validate(X_cv, y_cv, ks, metrics, weights, folds=splits, seed=seed,
                               progress=progress, client=client)
    best = choose_best(table, metric_order=metrics)
    params = {"k": best["k"], "metric": best["metric"], "weights": best["weights"]}
    subset = "" if len(y_cv) == len(ds.y_train) else \
        f" (a stratified subset of {len(y_cv)} of the {len(ds.y_train)} training samples)"
    why = (f"{folds}-fold cross-validation on the training split{subset}: best mean "
           f"accuracy {best['mean']:.4f} ± {best['std']:.4f} of {len(table)} configurations "
           f"at {_fmt_params(params)} (rule: best mean; ties to the smaller k, then uniform "
           f"before distance, then metric order {list(metrics)}); refitted on all "
           f"{len(ds.y_train)} training samples")
    selection = {"method": "k-fold cross-validation", "folds": folds, "n_samples": len(y_cv),
                 "ks": ks, "metrics": list(metrics), "weights": list(weights), "table": table,
                 "best": {"mean": best["mean"], "std": best["std"]}}
    return params, why, selection


def _knn_grid(grid, X, min_train):
    # a user's k that does not fit is an error, not clipped
    ks = check_ks(grid["ks"]) if "ks" in grid else grids.clip_ks(grids.KNN_KS, min_train)
    metrics = tuple(grid.get("metrics") or grids.knn_metrics_for(X))
    return ks, metrics, tuple(grid.get("weights") or grids.KNN_WEIGHTS)


def _select_knn_holdout(ds, n_fit, n_max, seed, grid, log, progress, client):
    """kNN's choice on the feature sets' validation split (a stratified subset when large).

    ``ds``'s training rows are in selection order (``_selection_order``): its
    first ``n_fit`` are the split's training part, the rest its validation
    part, and the first rows of each part are a stratified subset of it.
    """
    y = np.asarray(ds.y_train)
    n_va_all = len(y) - n_fit
    n_va = min(n_va_all, max(1, round(n_max * n_va_all / len(y))))
    tr = np.arange(min(n_fit, n_max - n_va))
    va = n_fit + np.arange(n_va)
    ks, metrics, weights = _knn_grid(grid, ds.X_train, len(tr))
    log(f"kNN: validation split of {len(tr)} training / {len(va)} validation samples, "
        f"k in {ks}, metrics {list(metrics)}, weights {list(weights)}")
    # consecutive rows: the fold searches views of the feature matrix, not copies
    table = knn_cross_validate(ds.X_train, y, ks, metrics, weights, folds=[(tr, va)],
                               seed=seed, progress=progress, client=client)
    best = choose_best(table, metric_order=metrics)
    params = {"k": best["k"], "metric": best["metric"], "weights": best["weights"]}
    why = (f"validation split of the training split ({len(tr)} training / {len(va)} "
           f"validation samples; the features were fitted on its training part): best "
           f"accuracy {best['mean']:.4f} of {len(table)} configurations at "
           f"{_fmt_params(params)} (rule: best accuracy; ties to the smaller k, then uniform "
           f"before distance, then metric order {list(metrics)}); refitted on all "
           f"{len(ds.y_train)} training samples")
    selection = {"method": "validation split", "n_train": len(tr), "n_val": len(va),
                 "ks": ks, "metrics": list(metrics), "weights": list(weights), "table": table,
                 "best": {"mean": best["mean"], "std": best["std"]}}
    return params, why, selection


def _select_linear_holdout(name, ds, n_fit, grid, max_train, max_val, seed, log, progress,
                           client):
    """A linear model's choice on the feature sets' validation split.

    Rows as in ``_select_knn_holdout``: both parts are slices of the feature matrix.
    """
    X, y = np.asarray(ds.X_train), np.asarray(ds.y_train)
    tr = slice(0, min(n_fit, int(max_train)))
    va = slice(n_fit, n_fit + min(len(y) - n_fit, int(max_val)))
    n_tr, n_va = tr.stop, va.stop - n_fit
    grid = grid or grids.linear_grid(name, n_tr)
    log(f"{name}: grid search of {math.prod(len(v) for v in grid.values())} configurations "
        f"on the validation split ({n_tr} training / {n_va} validation samples)")
    table, best = linear_search(make_estimator(name), X[tr], y[tr], grid, X_val=X[va],
                                y_val=y[va], seed=seed, progress=progress, client=client)
    return table, best, n_tr, n_va, " (the features were fitted on its training part)"


def _select_linear(name, ds, seed, grid, log, progress, client=None, holdout=None):
    grid = dict(grid or {})
    max_train = grid.pop("max_train", grids.SEARCH_MAX_TRAIN)
    max_val = grid.pop("max_val", grids.SEARCH_VAL)
    val_size = grid.pop("val_size", 0.2)
    if holdout is not None:
        table, best, n_tr, n_val, note = _select_linear_holdout(
            name, ds, holdout, grid, max_train, max_val, seed, log, progress, client)
        return _linear_choice(ds, table, best, n_tr, n_val, grid, note)
    X_s, y_s = ds.X_train, ds.y_train
    n_val = val_size if isinstance(val_size, int) else math.ceil(val_size * len(y_s))
    if len(y_s) - n_val > max_train:
        # a large training split: search on a stratified subset (see grids.py)
        X_s, y_s = _subset(X_s, y_s, max_train + max_val, seed)
        val_size = n_val = int(max_val)
    if not grid:  # no parameter given: the default grid for this size
        grid = grids.linear_grid(name, len(y_s) - n_val)
    n_configs = math.prod(len(v) for v in grid.values())
    log(f"{name}: grid search of {n_configs} configurations on a validation split of "
        f"{len(y_s)} training samples")
    table, best = linear_search(make_estimator(name), X_s, y_s, grid, val_size=val_size,
                                seed=seed, progress=progress, client=client)
    return _linear_choice(ds, table, best, len(y_s) - n_val, n_val, grid, "")


def _linear_choice(ds, table, best, n_tr, n_val, grid, note):
    best_row = next(r for r in table if r["params"] == best)
    n_ok = sum(not r["diverged"] for r in table)
    why = (f"grid search on a stratified validation split ({n_tr} training / "
           f"{n_val} validation samples from the training split{note}): best validation accuracy "
           f"{best_row['val_acc']:.4f} of {n_ok} configurations"
           f"{f' ({len(table) - n_ok} diverged)' if n_ok < len(table) else ''} at "
           f"{_fmt_params(best)} (ties to the first in grid order); refitted on all "
           f"{len(ds.y_train)} training samples")
    selection = {"method": "validation split", "n_train": n_tr, "n_val": n_val,
                 "grid": {k: list(v) for k, v in grid.items()}, "table": table,
                 "best": {"val_acc": best_row["val_acc"]}}
    return best, why, selection


def run_study(dataset="digits", root=None, download: bool = False,
              models=MODEL_NAMES, folds: int = 5, seed: int = 0, out="imgcls-report", *,
              knn_grid: dict | None = None, linear_grids: dict | None = None,
              save_models: bool = True, progress: bool | None = None,
              log: Callable[[str], None] | None = None, client=None,
              features=None, feature_params: dict | None = None) -> dict:
    """Run the whole study and write the report.

    Parameters
    ----------
    dataset : str or Dataset
        A name for :func:`imgcls.datasets.load_dataset` (``"digits"``,
        ``"mnist"``, ``"folder:PATH"``, ``"npz:PATH"`` ...) or a loaded Dataset.
    root, download :
        Passed to ``load_dataset``.
    models : str or sequence of str
        Any of ``"knn"``, ``"svm"``, ``"softmax"`` (``"knn,svm"`` works too).
    folds : int
        Folds of the kNN cross-validation.
    seed : int
        Seed of every split, subset and fit: the same seed gives the same study.
    out : path
        Output directory: ``report.html``, ``results.json``, ``models/<name>.safetensors``.
    knn_grid : dict, optional
        Override of the kNN grid: ``ks``, ``metrics``, ``weights``, ``max_samples``.
        The default ``ks`` is clipped to what the folds allow; given ``ks`` are
        not (a k larger than a fold's training part is a ConfigError).
    linear_grids : dict of model name -> grid, optional
        Override of a linear model's grid (parameter -> list of values; also
        ``val_size``, ``max_train``, ``max_val``).
    save_models : bool
        Save the final models with :func:`imgcls.io.save`.
    progress : bool, optional
        Force progress bars on/off (default: the global setting).
    log : callable, optional
        Called with a line of text at each stage.
    client : distributed.Client, optional
        Run the cross-validation's fold searches and the grid searches' fits on
        this Dask cluster: the results, the choices and the report are those of
        a local run with the same seed (only times differ).
    features : str or sequence of str, optional
        Feature sets to compare, e.g. ``"pixels,hog+color,kmeans"`` (names of
        :func:`imgcls.features.make_features`); None: the models take the
        data set's samples as they are.  With one feature set the model keys
        stay ``knn``, ``svm``, ``softmax``; with several they are
        ``"<features>/<model>"`` (``"hog+color/svm"``).
    feature_params : dict, optional
        Parameters per feature name, e.g. ``{"kmeans": {"n_centroids": 400}}``.

    Returns
    -------
    results : dict
        JSON-able; as written to ``results.json``: ``dataset`` (summary),
        ``models`` (per model: ``params``, ``test_top1``, ``test_top5``,
        ``fit_time``, ``predict_time``, ``why``, ``per_class_accuracy``,
        ``confusion``, ``confusion_normalized``, ``model_file``, ``features``:
        the feature set's name, or None for the samples as they are),
        ``features`` (per feature set: ``n_features``, extraction seconds), ``selection``
        (per model: the search table), ``protocol``, ``timings``, ``seed``,
        ``folds``, ``imgcls_version``, and ``report`` (path of report.html).

    Raises
    ------
    ConfigError
        Unknown model name, bad folds/seed/grid value, unwritable output path.
    DatasetError
        The data set cannot be loaded.
    """
    from ..datasets import Dataset, load_dataset

    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    models = parse_models(models)
    seed = check_seed(seed)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    knn_grid = dict(knn_grid or {})
    unknown = sorted(set(knn_grid) - {"ks", "metrics", "weights", "max_samples"})
    if unknown:
        raise ConfigError(f"unknown kNN grid key(s) {unknown}; valid: ks, metrics, weights, "
                          "max_samples")
    linear_grids = {k: dict(v) for k, v in (linear_grids or {}).items()}
    if features is not None:
        from .features import parse_feature_sets

        feature_sets = parse_feature_sets(features, feature_params)  # names fail here, early
    else:
        feature_sets = [None]
    out = check_out_dir(out)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if isinstance(dataset, Dataset):
        ds = dataset
    else:
        # no line before the load: a data set that fails to load is one error line
        ds = load_dataset(dataset, root=root, download=download)
    timings["load"] = time.perf_counter() - t0
    summary = ds.summary()
    n_classes = ds.n_classes
    log(f"{ds.name}: {len(ds.y_train)} training / {len(ds.y_test)} test samples, "
        f"{n_classes} classes")

    fitted, model_results, selection = {}, {}, {}
    transformers, feature_info = {}, {}
    cv_table = None
    fig_ds = ds
    holdout = None  # with features: how many feature rows the selection split trains on
    for fset in feature_sets:
        work = ds
        if fset is not None:
            from .features import extract_features

            if holdout is None:
                fit_rows, val_rows = _holdout_split(ds.y_train, seed)
                order = _selection_order(ds.y_train, fit_rows, val_rows, seed)
                holdout = len(fit_rows)  # the feature rows' first part, in ``order``
            work, transformers[fset.name], secs = extract_features(
                ds, fset, seed, log, fit_rows=fit_rows, order=order)
            feature_info[fset.name] = {"n_features": int(work.X_train.shape[1]), **secs}
            timings[f"features_{fset.name}"] = sum(secs.values())
            fig_ds = fig_ds if fig_ds is not ds else work
        # with several feature sets, the selection's lines say which: "hog+color/svm: ..."
        sel_log = log if len(feature_sets) == 1 else \
            (lambda msg, prefix=fset.name: log(f"{prefix}/{msg}"))
        for name in models:
            key = name if len(feature_sets) == 1 else f"{fset.name}/{name}"
            t0 = time.perf_counter()
            if name == "knn":
                params, why, sel = _select_knn(work, int(folds), seed, knn_grid, sel_log,
                                               progress, client, holdout)
                cv_table = cv_table or sel["table"]
            else:
                params, why, sel = _select_linear(name, work, seed, linear_grids.get(name),
                                                  sel_log, progress, client, holdout)
            timings[f"select_{key}"] = time.perf_counter() - t0
            selection[key] = sel

            log(f"{key}: final fit on the whole training split ({_fmt_params(params)})")
            model = _seeded(make_estimator(name, params), seed)
            t0 = time.perf_counter()
            model.fit(work.X_train, work.y_train)
            fit_time = time.perf_counter() - t0
            log(f"{key}: evaluating on the test split ({len(work.y_test)} samples)")
            ev = evaluate_model(model, work.X_test, work.y_test, n_classes)
            ev.pop("y_pred")
            fitted[key] = model
            model_results[key] = {"params": params, "test_top1": ev.pop("test_top1"),
                                  "test_top5": ev.pop("test_top5"), "fit_time": fit_time,
                                  "predict_time": ev.pop("predict_time"), "why": why, **ev,
                                  "estimator": type(model).__name__,
                                  "all_params": model.get_params(),
                                  "features": None if fset is None else fset.name}
            if fset is not None:
                from .features import feature_params

                model_results[key]["feature_params"] = feature_params(
                    transformers[fset.name], fset.name)
            if getattr(model, "history_", None):
                model_results[key]["history"] = model.history_
            log(f"{key}: test top-1 {model_results[key]['test_top1']:.4f}, "
                f"top-5 {model_results[key]['test_top5']:.4f}")

    t0 = time.perf_counter()
    log("drawing figures")
    with bar("drawing figures", None, disable=None if progress is None else not progress) \
            as advance:
        # with feature sets, pictures of the first set's models (feature rows, not
        # images: no retrievals) and a confusion matrix for every model
        figures = _figures(fig_ds, fitted, model_results, cv_table, seed,
                           lambda name: advance())
    timings["figures"] = time.perf_counter() - t0

    results = {
        "dataset": summary,
        "models": model_results,
        "selection": selection,
        "protocol": ("hyperparameters chosen on the training split only (kNN: k-fold "
                     "cross-validation; linear: validation split); the chosen configuration "
                     "refitted on the whole training split; the test split evaluated once, "
                     "after choosing"),
        "features": feature_info or None,
        "seed": seed,
        "folds": int(folds),
        "imgcls_version": __version__,
    }

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if save_models:
        from .. import io as imgcls_io

        (out / "models").mkdir(exist_ok=True)
        for name, model in fitted.items():
            path = out / "models" / f"{name.replace('/', '_')}.safetensors"
            fname = model_results[name]["features"]
            if fname is not None:  # the whole pipeline: features fitted on training rows
                from .features import ImagePipeline

                model = ImagePipeline([("features", transformers[fname]),
                                       ("classifier", model)])
            imgcls_io.save(model, path, classes=[ds.classes[int(c)] for c in model.classes_])
            model_results[name]["model_file"] = str(path.relative_to(out))
    timings["save_models"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    results["timings"] = timings
    results = jsonable(results)
    from ..report import write_report

    report = write_report(out, results, figures)
    results["report"] = str(report)
    log(f"report: {report}")
    return results


def _figures(ds, fitted, model_results, cv_table, seed, step):
    from .figures import study_figures

    return study_figures(ds, fitted, model_results, cv_table, seed, progress_step=step)
