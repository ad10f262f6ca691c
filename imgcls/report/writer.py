"""``write_report``: report.html and results.json, both or neither."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..io.atomic import write_files_atomic
from .html import default_caption, render_html
from .jsonsafe import to_jsonable

__all__ = ["write_report", "REPORT_NAME", "RESULTS_NAME"]

REPORT_NAME = "report.html"
RESULTS_NAME = "results.json"


def _check_results(results: Any) -> dict:
    if not isinstance(results, Mapping):
        raise ValueError(f"results: expected a dict, got {type(results).__name__}")
    for key in ("dataset", "models"):
        if key not in results:
            raise ValueError(f"results: missing {key!r}")
    if not isinstance(results["dataset"], Mapping):
        raise ValueError(f"results['dataset']: expected a dict (the data set summary), got "
                         f"{type(results['dataset']).__name__}")
    models = results["models"]
    if not isinstance(models, Mapping):
        raise ValueError(f"results['models']: expected a dict of model name -> results, got "
                         f"{type(models).__name__}")
    for name, m in models.items():
        if not isinstance(m, Mapping):
            raise ValueError(f"results['models'][{name!r}]: expected a dict, got "
                             f"{type(m).__name__}")
        if "params" in m and not isinstance(m["params"], Mapping):
            raise ValueError(f"results['models'][{name!r}]['params']: expected a dict")
    return to_jsonable(results)


def _render_figures(figures: Any) -> dict[str, bytes]:
    from ..plots import figure_png_bytes

    if figures is None:
        return {}
    if not isinstance(figures, Mapping):
        raise ValueError(f"figures: expected a dict of name -> Figure or PNG bytes, got "
                         f"{type(figures).__name__}")
    pngs = {}
    for key, fig in figures.items():
        try:
            pngs[str(key)] = figure_png_bytes(fig)
        except (TypeError, ValueError) as exc:
            # figure_png_bytes names its argument "fig"; name the entry instead
            raise ValueError(f"figures[{key!r}]: {str(exc).removeprefix('fig: ')}") from exc
    return pngs


def write_report(out_dir: str | os.PathLike, results: Mapping[str, Any],
                 figures: Mapping[str, Any] | None = None, *,
                 captions: Mapping[str, str] | None = None) -> Path:
    """Write ``report.html`` and ``results.json`` into ``out_dir``.

    ``report.html`` is one self-contained page (figures embedded as base64 PNG
    data URIs, inline CSS, no external resources; it opens offline) with the
    results table (top-1, top-5, fit and predict time per model), the chosen
    hyperparameters and why, the data set summary, per-class accuracy when the
    models have ``per_class_accuracy``, the search tables from
    ``results["selection"]`` when present, and every figure with a caption.
    ``results.json`` holds ``results`` as strict JSON (numpy values converted,
    NaN written as null) plus ``"figures"``: figure name -> caption.

    Every figure is rendered before anything is written, and the two files are
    written to temporary files first and renamed into place only when both are
    complete: a failure leaves the previous report (if any) untouched and no
    temporary file behind.

    Parameters
    ----------
    out_dir : str or path-like
        Output directory, created (with parents) when missing.
    results : dict
        At least ``{"dataset": {...summary...}, "models": {name: {"params": {...},
        "test_top1": float, "test_top5": float, "fit_time": s, "predict_time": s,
        "why": str, ...}}}``; optional per model: ``estimator``,
        ``per_class_accuracy`` (list per class index), ``model_file``; optional
        top level: ``selection`` (model -> {"table": [dict, ...]}), ``protocol``,
        ``timings``, ``seed``, ``folds``.  Model names ``knn``, ``svm``,
        ``softmax`` are shown as kNN, Linear SVM, Softmax.
    figures : dict of str -> matplotlib Figure or PNG bytes, optional
        Shown in this order.  Known names (``cv_curve``, ``retrievals``,
        ``templates_<model>``, ``training_<model>``, ``confusion_<model>``,
        ``decision_boundaries``) get descriptive captions.
    captions : dict of str -> str, optional
        Captions overriding the default ones.

    Returns
    -------
    path : Path
        The path of ``report.html``.

    Raises
    ------
    ValueError
        ``results`` lacks ``dataset``/``models`` or has the wrong types, or a
        figure is neither a Figure nor PNG bytes (named by its key).
    TypeError
        A value in ``results`` cannot be written as JSON (named by its position).
    OSError
        ``out_dir`` cannot be created or written; the message names it.
    """
    data = _check_results(results)
    pngs = _render_figures(figures)
    captions = {str(k): str(v) for k, v in (captions or {}).items()}
    all_captions = {key: captions.get(key) or default_caption(key) for key in pngs}
    if "figures" not in data:
        data["figures"] = all_captions
    page = render_html(data, pngs, all_captions, __version__)
    text = json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot create the report directory {str(out)!r}: "
                                   f"{exc.strerror or exc}") from exc
    html_path, json_path = out / REPORT_NAME, out / RESULTS_NAME
    write_files_atomic({json_path: text.encode("utf-8"), html_path: page.encode("utf-8")},
                       what="report file")
    return html_path
