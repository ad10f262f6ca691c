"""The report of ``imgcls knn-eval``: ``report.html`` and ``results.json``, both or neither.

Same conventions as :func:`imgcls.report.write_report` (standard library only,
every data string escaped, inline CSS, nothing loaded from the network; both
files written atomically together), with its own page: the accuracy of the
DINO kNN classifier for every k, headed by the statement that this is an
evaluation at fixed settings, not model selection.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..io.atomic import write_files_atomic
from .html import _CSS, _dataset_section, _table, esc, fmt_number, fmt_seconds, fmt_value
from .jsonsafe import to_jsonable
from .writer import REPORT_NAME, RESULTS_NAME

__all__ = ["write_knn_eval_report", "render_knn_eval_html"]


def render_knn_eval_html(results: Mapping[str, Any], version: str = __version__) -> str:
    """The page as a string, from the JSON-safe ``results`` of :func:`write_knn_eval_report`."""
    ds = results.get("dataset") if isinstance(results.get("dataset"), Mapping) else {}
    ev = results["evaluation"]
    name = ds.get("name", "data set")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    approximate = any("recall" in r for r in ev["rows"])
    headers = ["k", "test top-1", "test top-5"] + (["recall@k"] if approximate else [])
    rows = [[(esc(r["k"]), True), (esc(fmt_number(r["top1"])), True),
             (esc(fmt_number(r["top5"])), True)]
            + ([(esc(fmt_number(r.get("recall"))), True)] if approximate else [])
            for r in ev["rows"]]
    params = ", ".join(f"<code>{esc(k)}={esc(fmt_value(v))}</code>"
                       for k, v in ev["params"].items())
    timings = [[(esc(k), False), (esc(fmt_seconds(v)), True)] for k, v in ev["timings"].items()]
    recall_note = ("<p class=\"meta\">recall@k: the mean share of the exact k nearest "
                   "neighbours that the approximate search found.</p>" if approximate else "")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>imgcls kNN evaluation: {esc(name)}</title><style>{_CSS}"
        ".note{border-left:4px solid #c60;background:#fff6ee;padding:.5rem .8rem}</style>"
        "</head><body>",
        f"<h1>imgcls kNN evaluation: {esc(name)}</h1>",
        f'<p class="meta">imgcls {esc(version)} · {esc(now)}</p>',
        f'<p class="note"><b>{esc(ev["note"])}</b></p>',
        "<h2>Accuracy on the test split</h2>", _table(headers, rows), recall_note,
        f"<h2>Protocol</h2><p>{esc(ev['protocol'])}</p><p>{params}</p>",
        _dataset_section(ds),
        "<h2>Timings</h2>" + _table(["step", "time"], timings),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_knn_eval_report(out_dir: str | os.PathLike, dataset: Mapping[str, Any],
                          evaluation: Mapping[str, Any]) -> Path:
    """Write ``report.html`` and ``results.json`` of a kNN evaluation into ``out_dir``.

    Parameters
    ----------
    out_dir : str or path-like
        Created (with parents) when missing.
    dataset : dict
        The data set summary (:meth:`imgcls.datasets.Dataset.summary`).
    evaluation : dict
        What :func:`imgcls.neighbors.dino.knn_evaluate` returns.

    Returns
    -------
    path : Path
        The path of ``report.html``.  ``results.json`` holds
        ``{"kind": "knn-eval", "dataset": ..., "evaluation": ...}``.

    Raises
    ------
    OSError
        ``out_dir`` cannot be created or written; the message names it.
        Nothing is left half-written.
    """
    data = to_jsonable({"kind": "knn-eval", "dataset": dict(dataset),
                        "evaluation": dict(evaluation)})
    page = render_knn_eval_html(data)
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
