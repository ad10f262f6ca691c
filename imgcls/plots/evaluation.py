"""Figures of results: the confusion matrix and the training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._base import as_array, check_classes, check_records, class_color, finite_number, new_figure

# Above this many classes the cells are too small for numbers.
MAX_ANNOTATED_CLASSES = 20


def plot_confusion(cm: Any, classes: Sequence[Any], normalize: bool = True,
                   title: str = "Confusion matrix") -> Figure:
    """A confusion matrix as a heat map: rows are true classes, columns predictions.

    Parameters
    ----------
    cm : array-like of shape (C, C)
        Counts (or an already row-normalised matrix); non-negative.
    classes : sequence of str
        The C class names.
    normalize : bool, default True
        Divide each row by its sum, so cell (i, j) is the fraction of class i
        predicted as j (a row with no samples stays 0).  Otherwise counts are shown.
    title : str

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes: the matrix and its colour bar.  Cells carry their value as
        text when there are at most 20 classes.

    Raises
    ------
    ValueError
        ``cm`` is not square, has negative or non-finite values, or its size
        differs from ``len(classes)``.
    """
    M = as_array(cm, "cm", ndim=(2,)).astype(np.float64)
    names = check_classes(classes)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"cm: must be square (true x predicted), got shape {M.shape}")
    if M.shape[0] != len(names):
        raise ValueError(f"cm and classes: cm is {M.shape[0]}x{M.shape[1]} but there are "
                         f"{len(names)} class names")
    if np.any(M < 0):
        raise ValueError("cm: has negative entries")
    if normalize:
        sums = M.sum(axis=1, keepdims=True)
        M = np.divide(M, sums, out=np.zeros_like(M), where=sums > 0)
        vmax = 1.0
    else:
        vmax = max(float(M.max()), 1.0)
    integral = not normalize and np.all(M == np.round(M))

    C = len(names)
    side = min(max(4.5, 0.45 * C + 2.5), 16.0)
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(M, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class" if normalize else "count")
    ax.set_xticks(range(C), labels=names, rotation=45 if C > 5 else 0,
                  ha="right" if C > 5 else "center")
    ax.set_yticks(range(C), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title} ({'row-normalised' if normalize else 'counts'})")
    if C <= MAX_ANNOTATED_CLASSES:
        fontsize = "small" if C <= 10 else "x-small"
        for i in range(C):
            for j in range(C):
                v = M[i, j]
                text = f"{int(v)}" if integral else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if v > 0.5 * vmax else "black")
    return fig


def _history_value(entry: Mapping, key: str, i: int, optional: bool) -> float | None:
    value = entry.get(key)
    if value is None:
        if optional:
            return None
        raise ValueError(f"history[{i}]: missing {key!r}")
    return finite_number(value, f"history[{i}][{key!r}]")


def plot_training_curves(history: Sequence[Mapping[str, Any]],
                         title: str = "Training curves") -> Figure:
    """Loss and accuracy per epoch of a linear classifier (its ``history_``).

    Parameters
    ----------
    history : list of dict
        One entry per epoch with ``epoch`` (int), ``loss`` (float),
        ``train_acc`` (float) and ``val_acc`` (float, or None / absent when there
        was no validation data).
    title : str

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes: loss (left) and accuracy (right, with a validation line when
        any entry has ``val_acc``).

    Raises
    ------
    ValueError
        ``history`` is empty, or an entry lacks ``epoch``/``loss``/``train_acc``
        or holds a non-finite value; the message names the entry.
    """
    epochs, loss, train, val = [], [], [], []
    for i, entry in enumerate(check_records(history, "history", "epochs")):
        epochs.append(_history_value(entry, "epoch", i, False))
        loss.append(_history_value(entry, "loss", i, False))
        train.append(_history_value(entry, "train_acc", i, False))
        val.append(_history_value(entry, "val_acc", i, True))

    fig = new_figure(10.0, 4.0)
    ax_loss = fig.add_subplot(1, 2, 1)
    ax_loss.plot(epochs, loss, marker="o", markersize=3, color=class_color(0), label="training loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(fontsize="small")

    ax_acc = fig.add_subplot(1, 2, 2)
    ax_acc.plot(epochs, train, marker="o", markersize=3, color=class_color(0), label="training")
    if any(v is not None for v in val):
        v = np.array([np.nan if x is None else x for x in val])
        ax_acc.plot(epochs, v, marker="s", markersize=3, color=class_color(1), label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("Accuracy")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(fontsize="small")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(title)
    return fig
