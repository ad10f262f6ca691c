"""The lecture's pictures as matplotlib figures (PNG, no display needed).

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` drawn on
an Agg canvas without pyplot, so nothing depends on a display, the global
backend is untouched, and a figure is freed when the caller drops it.  Write
one with :func:`save_figure` (atomic) or embed it with :func:`figure_png_bytes`.
"""

from __future__ import annotations

from ._base import PNG_SIGNATURE, figure_png_bytes, save_figure
from .boundaries import plot_decision_boundaries
from .cv import plot_cv_curve
from .evaluation import plot_confusion, plot_training_curves
from .images import plot_retrievals, plot_templates
from .toy import toy_datasets

__all__ = [
    "PNG_SIGNATURE", "figure_png_bytes", "save_figure",
    "plot_cv_curve", "plot_templates", "plot_retrievals", "plot_confusion",
    "plot_training_curves", "plot_decision_boundaries", "toy_datasets",
]
