"""Pictures made of images: linear-classifier templates and nearest-neighbour retrievals."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from ._base import (CORRECT_COLOR, WRONG_COLOR, as_array, as_display_images, check_class_indices,
                    check_classes, check_same_length, display_image, grid_shape, minmax_255,
                    new_figure, square_side)


def _templates_for_display(T: np.ndarray, image_shape) -> tuple[np.ndarray, str]:
    """(C, H, W) grey / (C, H, W, 3) colour images, or (C, 1, d) heat-map rows; and the kind."""
    if T.ndim == 2:
        d = T.shape[1]
        if image_shape is not None:
            if int(np.prod(image_shape)) != d:
                raise ValueError(f"image_shape: {tuple(image_shape)} does not hold the {d} "
                                 f"values of a template")
            T = T.reshape((T.shape[0], *image_shape))
        elif (s := square_side(d)) is not None:
            T = T.reshape(T.shape[0], s, s)
        elif d % 3 == 0 and (s := square_side(d // 3)) is not None:
            T = T.reshape(T.shape[0], s, s, 3)
        else:
            return T[:, None, :], "row"
    if T.ndim == 4:
        if T.shape[3] == 1:
            T = T[..., 0]
        elif T.shape[3] != 3:
            raise ValueError(f"templates: images must have 1 or 3 channels (last axis), "
                             f"got shape {T.shape}")
    if T.ndim not in (3, 4):
        raise ValueError(f"templates: expected (C, H, W, ch), (C, H, W) or (C, d), "
                         f"got shape {T.shape}")
    return T, "image"


def plot_templates(templates: Any, classes: Sequence[Any], title: str = "Learned templates",
                   *, image_shape: tuple[int, ...] | None = None,
                   scale: str = "per_template") -> Figure:
    """The rows of a linear classifier's weight matrix shown as images, one per class.

    Each template is rescaled to 0..255 for display by min-max: per template by
    default (every template uses the full grey range, which shows its pattern
    best), or over all templates with ``scale="global"`` (cs231n's code; shows
    which classes have the larger weights).

    Parameters
    ----------
    templates : array-like of shape (C, H, W, ch), (C, H, W) or (C, d)
        ``ch`` is 1 (grey) or 3 (RGB).  Flat rows of length ``d`` are reshaped
        to ``image_shape`` if given; else to an ``s x s`` grey image when
        ``d == s*s``, or an ``s x s`` RGB image (channels last) when
        ``d == 3*s*s``; any other ``d`` (e.g. embedding features) is drawn as a
        heat-map strip of ``d`` cells, one strip per class.
    classes : sequence of str
        One name per template.
    title : str
    image_shape : tuple of int, optional
        Shape of one template image, for flat (C, d) input.
    scale : {"per_template", "global"}

    Returns
    -------
    fig : matplotlib.figure.Figure
        C axes, each with one image titled with its class name.

    Raises
    ------
    ValueError
        ``templates`` has a shape that cannot be shown, non-finite values, or a
        count different from ``len(classes)``; or ``scale`` is unknown.
    """
    T = as_array(templates, "templates", ndim=(2, 3, 4))
    names = check_classes(classes)
    if T.shape[0] != len(names):
        raise ValueError(f"templates and classes: {T.shape[0]} templates but {len(names)} "
                         f"class names; they must match one to one")
    if scale not in ("per_template", "global"):
        raise ValueError(f"scale: must be 'per_template' or 'global', got {scale!r}")
    shown, kind = _templates_for_display(T, image_shape)
    if scale == "global":
        scaled = minmax_255(shown)
    else:
        scaled = np.stack([minmax_255(t) for t in shown])
    pixels = np.round(scaled).astype(np.uint8)

    n = len(names)
    if kind == "row":
        rows, cols = n, 1
        fig = new_figure(8.0, 0.55 * n + 1.0)
    else:
        rows, cols = grid_shape(n, max_cols=10)
        fig = new_figure(1.45 * cols + 0.3, 1.6 * rows + 0.6)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        img = pixels[i]
        if kind == "row":
            ax.imshow(img, cmap="viridis", vmin=0, vmax=255, aspect="auto",
                      interpolation="nearest")
            ax.set_yticks([])
            ax.set_ylabel(name, rotation=0, ha="right", va="center")
            if i < n - 1:
                ax.set_xticks([])
            else:
                ax.set_xlabel("feature index")
        else:
            kw = {"cmap": "gray", "vmin": 0, "vmax": 255} if img.ndim == 2 else {}
            ax.imshow(img, interpolation="nearest", **kw)
            ax.set_title(name, fontsize="medium")
            ax.axis("off")
    fig.suptitle(title)
    return fig


def _frame(ax, color: str, width: float = 3.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def plot_retrievals(X_query: Any, y_query: Any, X_train: Any, y_train: Any, neighbor_ind: Any,
                    classes: Sequence[Any], n_neighbors: int = 10, *,
                    title: str = "Nearest-neighbour retrievals",
                    image_shape: tuple[int, ...] | None = None) -> Figure:
    """Query images, each followed by its nearest training images.

    Row ``i`` shows query ``i`` (titled with its true class) and then its
    ``n_neighbors`` nearest training images, nearest first.  A neighbour whose
    label equals the query's is framed green; any other is framed red and its
    label is written under it.

    Parameters
    ----------
    X_query : array of shape (n_query, H, W[, C]) or (n_query, d)
        Images (uint8 shown on the fixed 0..255 scale, other types min-max
        rescaled per image).  Flat rows are reshaped as in
        :func:`plot_templates` (or to ``image_shape``).
    y_query : array of int, shape (n_query,)
        Class indices into ``classes``.
    X_train : array of shape (n_train, H, W[, C]) or (n_train, d)
    y_train : array of int, shape (n_train,)
    neighbor_ind : array of int, shape (n_query, >= n_neighbors)
        Row ``i`` holds indices into ``X_train`` of the neighbours of query
        ``i``, nearest first (``KNearestNeighbor.kneighbors(...)[1]``).
    classes : sequence of str
    n_neighbors : int, default 10
    title : str
    image_shape : tuple of int, optional
        Shape of one image, for flat input.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``n_query * (1 + n_neighbors)`` axes, one image each.

    Raises
    ------
    ValueError
        Lengths differ, ``neighbor_ind`` has too few columns or an index out of
        range, a label is not a class index, or the images cannot be shown.
    """
    names = check_classes(classes)
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) \
            or n_neighbors < 1:
        raise ValueError(f"n_neighbors: must be a positive integer, got {n_neighbors!r}")
    n_neighbors = int(n_neighbors)
    Xq = as_display_images(as_array(X_query, "X_query", ndim=(2, 3, 4)), "X_query", image_shape)
    Xt = as_display_images(as_array(X_train, "X_train", ndim=(2, 3, 4)), "X_train", image_shape)
    yq = check_class_indices(as_array(y_query, "y_query"), len(names), "y_query")
    yt = check_class_indices(as_array(y_train, "y_train"), len(names), "y_train")
    ind = as_array(neighbor_ind, "neighbor_ind", ndim=(2,))
    nq = check_same_length(X_query=Xq, y_query=yq, neighbor_ind=ind)
    nt = check_same_length(X_train=Xt, y_train=yt)
    if nq == 0:
        raise ValueError("X_query: has no images; nothing to plot")
    if not np.issubdtype(ind.dtype, np.integer):
        raise ValueError(f"neighbor_ind: expected integer indices, got dtype {ind.dtype}")
    if ind.shape[1] < n_neighbors:
        raise ValueError(f"neighbor_ind: has {ind.shape[1]} columns, fewer than "
                         f"n_neighbors={n_neighbors}")
    ind = ind[:, :n_neighbors]
    if ind.min() < 0 or ind.max() >= nt:
        raise ValueError(f"neighbor_ind: indices must lie in 0..{nt - 1} (rows of X_train), "
                         f"got {int(ind.min())}..{int(ind.max())}")
    if Xq.shape[1:] != Xt.shape[1:]:
        raise ValueError(f"X_query and X_train: image shapes differ ({Xq.shape[1:]} vs "
                         f"{Xt.shape[1:]})")

    cols = 1 + n_neighbors
    fig = new_figure(1.05 * cols + 0.4, 1.25 * nq + 0.7)
    for i in range(nq):
        ax = fig.add_subplot(nq, cols, i * cols + 1)
        img, kw = display_image(Xq[i])
        ax.imshow(img, interpolation="nearest", **kw)
        _frame(ax, "black", 1.5)
        ax.set_ylabel(names[yq[i]], rotation=0, ha="right", va="center", fontsize="small")
        if i == 0:
            ax.set_title("query", fontsize="small")
        for j in range(n_neighbors):
            t = int(ind[i, j])
            ax = fig.add_subplot(nq, cols, i * cols + 2 + j)
            img, kw = display_image(Xt[t])
            ax.imshow(img, interpolation="nearest", **kw)
            correct = yt[t] == yq[i]
            _frame(ax, CORRECT_COLOR if correct else WRONG_COLOR)
            if not correct:
                ax.set_xlabel(names[yt[t]], color=WRONG_COLOR, fontsize="small", labelpad=1)
            if i == 0:
                ax.set_title(f"#{j + 1}", fontsize="small")
    fig.suptitle(f"{title}  (green frame: same class as the query, red: other class)",
                 fontsize="medium")
    return fig
