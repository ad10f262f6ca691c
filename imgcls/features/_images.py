"""Input checks and batching shared by the feature transformers.

Every transformer takes images of shape (n, H, W, C) or (n, H, W) with ``uint8``
pixels, the form every imgcls data set has, and returns float32 rows.  Images
are checked once here, so each transformer's messages name the same things.
"""

from __future__ import annotations

import os

import numpy as np

from .._validation import ImageShape, Int, Schema
from ..config import budget_bytes  # noqa: F401  (re-exported: the modules of this package import it from here)

#: What every fitted image transformer holds: the shape of one image it was
#: fitted on, and the flattened size scikit-learn calls ``n_features_in_``.
IMAGE_ATTRIBUTES = {
    "n_features_in_": Int(dim="n_features"),
    "image_shape_": ImageShape("n_features"),
}


def image_schema(dims=None, **attributes) -> Schema:
    """The learned-attribute schema of a transformer: the image attributes plus its own."""
    return Schema(dims={"n_features": 1, **(dims or {})},
                  attributes={**IMAGE_ATTRIBUTES, **attributes})


def check_images(X, *, name: str, min_size=(1, 1), what: str = "") -> np.ndarray:
    """Return ``X`` as a C-contiguous ``uint8`` array of shape (n, H, W, C).

    Parameters
    ----------
    X : array-like of shape (n, H, W, C) or (n, H, W)
        ``uint8`` images; greyscale images (n, H, W) get one channel.
    name : str
        The transformer, for the messages.
    min_size : (int, int)
        Smallest (H, W) the transformer can use.
    what : str
        Why that is the smallest size (e.g. ``"2x2 cells of 8x8 pixels"``).

    Raises
    ------
    ValueError
        Not an array of images, not ``uint8``, no images, or images smaller
        than ``min_size``.
    """
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim not in (3, 4):
        raise ValueError(f"{name} expects images of shape (n, H, W, C) or (n, H, W); got an "
                         f"array of shape {X.shape}")
    if X.dtype != np.uint8:
        raise ValueError(f"{name} expects uint8 pixels (0..255); got dtype {X.dtype} "
                         f"(convert with np.clip(X, 0, 255).astype(np.uint8) if the values "
                         f"are pixels)")
    if X.ndim == 3:
        X = X[..., None]
    if X.shape[0] == 0:
        raise ValueError(f"{name} got 0 images; at least 1 is required")
    if X.shape[3] == 0:
        raise ValueError(f"{name} got images with 0 channels")
    h, w = X.shape[1:3]
    if h < min_size[0] or w < min_size[1]:
        why = f" ({what})" if what else ""
        raise ValueError(f"{name} needs images of at least {min_size[0]}x{min_size[1]} "
                         f"pixels{why}; got {h}x{w}")
    return np.ascontiguousarray(X)


def check_same_shape(X: np.ndarray, image_shape, name: str) -> None:
    """``transform`` images must have the shape ``fit`` saw (features line up)."""
    if tuple(X.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} was fitted on images of shape {tuple(image_shape)}; got "
                         f"images of shape {tuple(X.shape[1:])}")


def batch_rows(bytes_per_image: float, working_memory, minimum: int = 1) -> int:
    """Images per batch so that one batch's temporaries fit the budget (at least ``minimum``)."""
    return max(minimum, int(budget_bytes(working_memory) // max(bytes_per_image, 1.0)))


def n_threads(n_jobs) -> int:
    """Worker threads for ``n_jobs`` (None or -1: every core; -2: all but one)."""
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return cpus
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return max(1, min(int(n_jobs), cpus))
