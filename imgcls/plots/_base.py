"""Figure creation, PNG output and the input checks shared by every plot.

Figures are built as :class:`matplotlib.figure.Figure` objects with an Agg
canvas attached directly, never through ``pyplot``: nothing is registered in
pyplot's global figure manager (so a figure is freed as soon as the caller drops
it), no GUI backend is ever selected, and the global backend setting is left
alone for the user's own code.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import write_bytes_atomic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Qualitative colours for classes (matplotlib's tab10), as RGB in 0..1.
CLASS_COLORS = np.array([
    (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157), (0.580, 0.404, 0.741), (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761), (0.498, 0.498, 0.498), (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
])

CORRECT_COLOR = "#1a9850"
WRONG_COLOR = "#d73027"


def new_figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    """A Figure with its own Agg canvas, outside pyplot's bookkeeping."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def class_color(i: int) -> np.ndarray:
    """RGB colour of class index ``i`` (cycling through ten colours)."""
    return CLASS_COLORS[int(i) % len(CLASS_COLORS)]


def figure_png_bytes(fig: Figure | bytes, dpi: float | None = None) -> bytes:
    """Render a figure to PNG bytes (for embedding in the report).

    Parameters
    ----------
    fig : matplotlib.figure.Figure or bytes
        A figure, or PNG bytes, which are checked and returned unchanged.
    dpi : float, optional
        Resolution; the figure's own (100) by default.

    Returns
    -------
    png : bytes
        Starts with the PNG signature ``b"\\x89PNG\\r\\n\\x1a\\n"``.

    Raises
    ------
    TypeError
        ``fig`` is neither a Figure nor bytes.
    ValueError
        ``fig`` is bytes that are not a PNG image.
    """
    if isinstance(fig, (bytes, bytearray, memoryview)):
        data = bytes(fig)
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("fig: bytes given are not a PNG image (no PNG signature)")
        return data
    if not isinstance(fig, Figure):
        raise TypeError(f"fig: expected a matplotlib Figure or PNG bytes, got {type(fig).__name__}")
    if not isinstance(fig.canvas, FigureCanvasAgg):
        # A figure made elsewhere (e.g. by pyplot with an interactive backend):
        # render through Agg anyway, without touching its original canvas for good.
        canvas = fig.canvas
        FigureCanvasAgg(fig)
        try:
            return _render(fig, dpi)
        finally:
            fig.set_canvas(canvas)
    return _render(fig, dpi)


def _render(fig: Figure, dpi: float | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi if dpi is not None else fig.dpi)
    return buf.getvalue()


def save_figure(fig: Figure | bytes, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Write a figure as a PNG file, atomically.

    The image is rendered in memory first, then written to a temporary file in
    the target directory and renamed over ``path``; if rendering or writing
    fails, ``path`` keeps its old content and no temporary file remains.

    Parameters
    ----------
    fig : matplotlib.figure.Figure or bytes
        The figure (or PNG bytes from :func:`figure_png_bytes`).
    path : str or path-like
        Target file; its directory must exist.
    dpi : float, optional
        Resolution; the figure's own by default.

    Returns
    -------
    path : Path

    Raises
    ------
    OSError
        The directory does not exist or cannot be written (the message names it).
    """
    data = figure_png_bytes(fig, dpi=dpi)
    return write_bytes_atomic(path, data, what="figure")


# --------------------------------------------------------------------------- checks

def as_array(value: Any, name: str, *, ndim: tuple[int, ...] | None = None,
             numeric: bool = True, finite: bool = True) -> np.ndarray:
    """``np.asarray(value)`` with a ValueError naming ``name`` when it does not fit."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from exc
    if ndim is not None and arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name}: expected a {want} array, got shape {arr.shape}")
    if numeric:
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if not (np.issubdtype(arr.dtype, np.number)):
            raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
        if finite and np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def check_records(records: Any, name: str, entries: str) -> list:
    """A non-empty list of dicts (a CV table, a training history); returns it as a list.

    ``entries`` names what an entry is ('rows', 'epochs') in the empty-list error.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise ValueError(f"{name}: expected a list of dicts, got {type(records).__name__}")
    if len(records) == 0:
        raise ValueError(f"{name}: has no {entries}; nothing to plot")
    for i, entry in enumerate(records):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{name}[{i}]: expected a dict, got {type(entry).__name__}")
    return list(records)


def finite_number(value: Any, where: str) -> float:
    """``value`` as a finite float; the error names ``where`` (e.g. "table[3]['mean']")."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: must be finite, got {value!r}")
    return x


def check_same_length(**arrays: Any) -> int:
    """All arguments have the same first dimension; returns it."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        names = " and ".join(lengths)
        raise ValueError(f"{names}: lengths differ ({detail})")
    return next(iter(lengths.values()))


def check_class_indices(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    """Labels must be integer class indices in 0..n_classes-1 (the Dataset convention)."""
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class indices, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name}: class indices must lie in 0..{n_classes - 1} "
                         f"(one per entry of classes), got {int(y.min())}..{int(y.max())}")
    return y.astype(np.int64, copy=False)


def check_classes(classes: Any, name: str = "classes") -> list[str]:
    """Class names as a list of strings (numbers are accepted and shown as text)."""
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__"):
        raise ValueError(f"{name}: expected a sequence of class names, got {type(classes).__name__}")
    names = [str(c) for c in classes]
    if not names:
        raise ValueError(f"{name}: is empty")
    return names


def grid_shape(n: int, max_cols: int = 10) -> tuple[int, int]:
    """(rows, cols) of a near-rectangular grid holding ``n`` panels."""
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def square_side(d: int) -> int | None:
    """``s`` with ``s * s == d``, else None."""
    s = math.isqrt(d)
    return s if s * s == d else None


def as_display_images(X: np.ndarray, name: str,
                      image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Images ready for ``imshow``: (n, H, W) grey or (n, H, W, 3) colour.

    Accepts (n, H, W), (n, H, W, 1), (n, H, W, 3), or flat (n, d) rows when
    ``image_shape`` is given or ``d`` is ``s*s`` (grey square) or ``3*s*s``
    (colour square, channels last).
    """
    if X.ndim == 2:
        d = X.shape[1]
        if image_shape is not None:
            if int(np.prod(image_shape)) != d:
                raise ValueError(f"{name}: rows of {d} values cannot be shown as images of "
                                 f"shape {tuple(image_shape)}")
            X = X.reshape((X.shape[0], *image_shape))
        elif (s := square_side(d)) is not None:
            X = X.reshape(X.shape[0], s, s)
        elif d % 3 == 0 and (s := square_side(d // 3)) is not None:
            X = X.reshape(X.shape[0], s, s, 3)
        else:
            raise ValueError(f"{name}: rows of {d} values are not square images; pass image_shape")
    if X.ndim == 4:
        if X.shape[3] == 1:
            X = X[..., 0]
        elif X.shape[3] != 3:
            raise ValueError(f"{name}: images must have 1 or 3 channels (last axis), "
                             f"got shape {X.shape}")
    if X.ndim not in (3, 4):
        raise ValueError(f"{name}: expected images (n, H, W[, C]), got shape {X.shape}")
    return X


def minmax_255(a: np.ndarray) -> np.ndarray:
    """Rescale to 0..255 (float); a constant array becomes mid-grey (127.5)."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 0:
        return np.full_like(a, 127.5)
    return 255.0 * (a - lo) / (hi - lo)


def display_image(img: np.ndarray) -> tuple[np.ndarray, dict]:
    """An image and ``imshow`` keywords that show its raw pixel values faithfully.

    uint8 pixels are shown on the fixed 0..255 scale; other types are min-max
    rescaled per image (features after preprocessing have no fixed range).
    """
    if img.dtype == np.uint8:
        shown = img
    else:
        shown = minmax_255(img) / 255.0 if img.ndim == 3 else minmax_255(img)
    if img.ndim == 2:
        kw = {"cmap": "gray", "vmin": 0, "vmax": 255 if img.dtype == np.uint8 else 255.0}
    else:
        kw = {}
    return shown, kw
