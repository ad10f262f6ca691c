"""The report page: one self-contained HTML document built with the standard library.

Every string that comes from the data (class names, file names, parameter
values, the ``why`` texts) passes through :func:`html.escape`; figures are
embedded as base64 PNG data URIs and the style sheet is inline, so the page
refers to nothing outside itself and opens offline.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

MODEL_LABELS = {"knn": "kNN", "svm": "Linear SVM", "softmax": "Softmax"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{font-weight:600}
figure{margin:1.5rem 0;padding:0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.92rem;margin-top:.3rem}
code{background:#f5f5f5;padding:0 .2rem}details{margin:.4rem 0}
.why{margin:.2rem 0 1rem 0}
"""


def esc(value: Any) -> str:
    """Text for HTML content or attribute values (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def model_label(name: str) -> str:
    return MODEL_LABELS.get(str(name), str(name))


def fmt_number(value: Any, digits: int = 4) -> str:
    """Accuracies and other results: fixed decimals; missing or NaN as a dash."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "—"
    return str(value)


def fmt_seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def fmt_value(value: Any) -> str:
    """A short plain-text rendering of a parameter or table value (not yet escaped)."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "—"
    if isinstance(value, (list, tuple)):
        if len(value) > 8:
            return "[" + ", ".join(fmt_value(v) for v in value[:8]) + f", … ({len(value)} values)]"
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items())
    if value is None:
        return "None"
    return str(value)


def default_caption(key: str) -> str:
    """A caption for a figure named as :mod:`imgcls.pipeline.figures` names them."""
    m = re.fullmatch(r"(templates|training|confusion)_(.+)", key)
    if key == "cv_curve":
        return ("kNN cross-validation on the training split: accuracy against k, one dot per "
                "fold, the line through the mean accuracies, error bars of one standard "
                "deviation.")
    if key == "retrievals":
        return ("Test images (left column) and their nearest training images, nearest first; "
                "green frame: same class as the test image, red: another class (named below).")
    if key == "decision_boundaries":
        return ("Decision regions on 2-D toy data (XOR quadrants, a ring, three modes, blobs); "
                "white: a tied kNN vote. A linear classifier cannot separate the first three.")
    if m:
        kind, name = m.groups()
        label = model_label(name)
        if kind == "templates":
            return (f"{label}: the learned weights of each class shown as an image "
                    "(min-max rescaled per class).")
        if kind == "training":
            return f"{label}: loss and accuracy per epoch."
        return f"{label}: confusion matrix on the test split (row = true class)."
    return key.replace("_", " ").capitalize() + "."


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, bool]]],
           row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; cells are (already-escaped html, is_number)."""
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>")
        out.extend(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in row)
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _dataset_section(ds: Mapping[str, Any]) -> str:
    rows = []
    labels = [("name", "name"), ("source", "source"), ("n_train", "training samples"),
              ("n_test", "test samples"), ("n_classes", "classes"),
              ("image_shape", "image shape"), ("n_features", "values per sample"),
              ("dtype", "pixel type")]
    for key, label in labels:
        if key in ds and ds[key] is not None:
            rows.append([(esc(label), False), (esc(fmt_value(ds[key])), False)])
    known = {k for k, _ in labels} | {"classes", "counts"}
    for key, value in ds.items():
        if key not in known and not isinstance(value, (Mapping, list)):
            rows.append([(esc(key), False), (esc(fmt_value(value)), False)])
    return "<h2>Data set</h2>" + _table(["property", "value"], rows)


def _per_class_section(ds: Mapping[str, Any], models: Mapping[str, Mapping]) -> str:
    classes = ds.get("classes")
    counts = ds.get("counts") if isinstance(ds.get("counts"), Mapping) else {}
    with_acc = [n for n, m in models.items()
                if isinstance(m.get("per_class_accuracy"), (list, tuple))]
    if not isinstance(classes, (list, tuple)) or not classes:
        n = max([len(models[n]["per_class_accuracy"]) for n in with_acc] or [0])
        classes = [str(i) for i in range(n)]
    if not classes:
        return ""
    headers = ["class"]
    cols = []
    for split in ("train", "test"):
        if isinstance(counts.get(split), (list, tuple)):
            headers.append(f"{split} samples")
            cols.append(counts[split])
    for name in with_acc:
        headers.append(f"{model_label(name)} accuracy")
        cols.append(models[name]["per_class_accuracy"])
    if len(headers) == 1:
        return ""
    rows = []
    for i, c in enumerate(classes):
        row = [(esc(c), False)]
        for col in cols:
            v = col[i] if i < len(col) else None
            row.append((esc(fmt_number(v)), True))
        rows.append(row)
    title = "Per-class accuracy on the test split" if with_acc else "Samples per class"
    return f"<h2>{title}</h2>" + _table(headers, rows)


def _results_section(models: Mapping[str, Mapping]) -> str:
    headers = ["model", "estimator", "test top-1", "test top-5", "fit time", "predict time",
               "model file"]
    rows, classes = [], []
    tops = [m.get("test_top1") for m in models.values()
            if isinstance(m.get("test_top1"), (int, float))]
    best = max(tops) if tops else None
    for name, m in models.items():
        rows.append([(esc(model_label(name)), False), (esc(m.get("estimator", "")), False),
                     (esc(fmt_number(m.get("test_top1"))), True),
                     (esc(fmt_number(m.get("test_top5"))), True),
                     (esc(fmt_seconds(m.get("fit_time"))), True),
                     (esc(fmt_seconds(m.get("predict_time"))), True),
                     (f"<code>{esc(m['model_file'])}</code>" if m.get("model_file") else "", False)])
        classes.append("best" if best is not None and m.get("test_top1") == best else "")
    return ("<h2>Results on the test split</h2>" + _table(headers, rows, classes)
            + '<p class="meta">The best top-1 accuracy is in bold. Fit time: the final fit on '
              "the whole training split; predict time: ranking every test sample.</p>")


def _choice_section(models: Mapping[str, Mapping], selection: Mapping | None) -> str:
    out = ["<h2>Chosen hyperparameters and why</h2>"]
    for name, m in models.items():
        out.append(f"<h3>{esc(model_label(name))}</h3>")
        params = m.get("params") or {}
        if isinstance(params, Mapping) and params:
            out.append("<p>" + ", ".join(f"<code>{esc(k)}={esc(fmt_value(v))}</code>"
                                         for k, v in params.items()) + "</p>")
        if m.get("why"):
            out.append(f'<p class="why">{esc(m["why"])}</p>')
        sel = selection.get(name) if isinstance(selection, Mapping) else None
        table = sel.get("table") if isinstance(sel, Mapping) else None
        if isinstance(table, list) and table and all(isinstance(r, Mapping) for r in table):
            out.append(_rows_table(table, f"search table: {len(table)} configuration"
                                          f"{'s' if len(table) != 1 else ''}"))
    return "".join(out)


def _rows_table(rows: Sequence[Mapping], summary: str) -> str:
    """A list of dicts as a collapsible table (columns: the union of the keys, in order)."""
    headers: list[str] = []
    for r in rows:
        headers.extend(k for k in r if k not in headers)
    body = [[(esc(fmt_value(r.get(h))), isinstance(r.get(h), (int, float))) for h in headers]
            for r in rows]
    return f"<details><summary>{esc(summary)}</summary>{_table(headers, body)}</details>"


def _figures_section(pngs: Mapping[str, bytes], captions: Mapping[str, str]) -> str:
    if not pngs:
        return ""
    out = ["<h2>Figures</h2>"]
    for key, data in pngs.items():
        caption = captions.get(key) or default_caption(key)
        b64 = base64.b64encode(data).decode("ascii")
        out.append(f'<figure id="fig-{esc(key)}"><img src="data:image/png;base64,{b64}" '
                   f'alt="{esc(caption)}"><figcaption><b>{esc(key)}</b>: {esc(caption)}'
                   "</figcaption></figure>")
    return "".join(out)


def _timings_section(timings: Any) -> str:
    if not isinstance(timings, Mapping) or not timings:
        return ""
    rows = [[(esc(k), False), (esc(fmt_seconds(v)), True)] for k, v in timings.items()]
    return "<h2>Timings</h2>" + _table(["step", "time"], rows)


def render_html(results: Mapping[str, Any], pngs: Mapping[str, bytes],
                captions: Mapping[str, str], version: str) -> str:
    """The whole page as a string (``results`` already JSON-safe)."""
    ds = results.get("dataset") if isinstance(results.get("dataset"), Mapping) else {}
    models = results["models"]
    name = ds.get("name", "data set")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = [f"imgcls {esc(version)}", esc(now)]
    for key in ("seed", "folds"):
        if results.get(key) is not None:
            meta.append(f"{key} {esc(results[key])}")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>imgcls report: {esc(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>imgcls report: {esc(name)}</h1>", f'<p class="meta">{" · ".join(meta)}</p>',
    ]
    parts.append(_dataset_section(ds))
    if results.get("protocol"):
        parts.append(f"<h2>Protocol</h2><p>{esc(results['protocol'])}</p>")
    parts += [_results_section(models), _choice_section(models, results.get("selection")),
              _per_class_section(ds, models),
              _figures_section(pngs, captions), _timings_section(results.get("timings")),
              "</body></html>"]
    return "\n".join(p for p in parts if p) + "\n"
