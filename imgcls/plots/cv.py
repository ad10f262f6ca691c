"""The cross-validation curve: accuracy against k (cs231n's "cross-validation on k")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from ._base import check_records, class_color, finite_number, new_figure

_REQUIRED = ("metric", "k", "fold_scores", "mean", "std")


def _check_table(table: Any) -> list[dict]:
    rows = []
    for i, row in enumerate(check_records(table, "table", "rows")):
        missing = [key for key in _REQUIRED if key not in row]
        if missing:
            raise ValueError(f"table[{i}]: missing key(s) {', '.join(map(repr, missing))}")
        k = finite_number(row["k"], f"table[{i}]['k']")
        if k < 1 or k != int(k):
            raise ValueError(f"table[{i}]['k']: must be a positive integer, got {row['k']!r}")
        scores = np.asarray(row["fold_scores"], dtype=object).ravel()
        try:
            scores = scores.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"table[{i}]['fold_scores']: expected a list of numbers") from None
        if scores.size == 0 or not np.all(np.isfinite(scores)):
            raise ValueError(f"table[{i}]['fold_scores']: must be a non-empty list of finite numbers")
        rows.append({"metric": str(row["metric"]), "weights": str(row.get("weights", "uniform")),
                     "k": int(k), "fold_scores": scores, "mean": finite_number(row["mean"], f"table[{i}]['mean']"),
                     "std": finite_number(row["std"], f"table[{i}]['std']")})
    return rows


def plot_cv_curve(table: Sequence[Mapping[str, Any]],
                  title: str = "Cross-validation accuracy against k") -> Figure:
    """Accuracy against k from k-fold cross-validation, the lecture's figure.

    One curve per metric (and per weighting, when the table holds more than one):
    a dot per fold at each k, a line through the mean accuracies and error bars of
    one standard deviation.  The k axis is logarithmic when the grid spans more
    than a factor of 20 (e.g. 1..100), with a tick at every k of the grid.

    Parameters
    ----------
    table : list of dict
        One row per (metric, k, weights) with keys ``metric`` (str), ``k`` (int),
        ``weights`` (str, optional, default "uniform"), ``fold_scores`` (list of
        float, one per fold), ``mean`` and ``std`` (float).
    title : str

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes; its legend has one entry per curve.

    Raises
    ------
    ValueError
        ``table`` is empty, or a row lacks a key or holds a non-number; the
        message names the row.
    """
    rows = _check_table(table)
    several_weights = len({r["weights"] for r in rows}) > 1
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["metric"], r["weights"]), []).append(r)

    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    # Offset the curves a little along x so that error bars at the same k do not
    # hide each other; in log space the offset is a ratio.
    ks_all = sorted({r["k"] for r in rows})
    log_x = ks_all[-1] / ks_all[0] > 20
    n_groups = len(groups)
    for g, ((metric, weights), grp) in enumerate(groups.items()):
        grp = sorted(grp, key=lambda r: r["k"])
        ks = np.array([r["k"] for r in grp], dtype=np.float64)
        shift = (g - (n_groups - 1) / 2) * 0.025
        xs = ks * (1 + shift) if log_x else ks + shift * 4
        color = class_color(g)
        label = f"{metric}, {weights}" if several_weights else metric
        for x, r in zip(xs, grp):
            ax.scatter(np.full(r["fold_scores"].size, x), r["fold_scores"], s=12,
                       color=color, alpha=0.45, linewidths=0, zorder=2)
        ax.errorbar(xs, [r["mean"] for r in grp], yerr=[r["std"] for r in grp], color=color,
                    marker="o", markersize=4, capsize=3, linewidth=1.6, label=label, zorder=3)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ks_all))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(k) for k in ks_all])
    else:
        ax.set_xticks(ks_all)
    ax.set_xlabel("k (number of neighbours)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(title="metric, weights" if several_weights else "metric", loc="best",
              fontsize="small")
    return fig
