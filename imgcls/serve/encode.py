"""Small images as ``data:image/png;base64,...`` URLs (kNN thumbnails, linear templates).

Only images already held by a loaded model are encoded (training rows,
weight rows), each at most :data:`MAX_SIDE` pixels a side, so the work per
request is bounded by the model and the request's limits.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

__all__ = ["png_data_url", "to_uint8", "MAX_SIDE"]

#: Longest side of an encoded image: larger ones are shrunk (bilinear) first,
#: so a model of large images still gives thumbnail-sized responses.
MAX_SIDE = 128

_PREFIX = "data:image/png;base64,"


def to_uint8(image: np.ndarray, stretch: bool = False) -> np.ndarray:
    """Pixels as uint8 for display.

    Parameters
    ----------
    image : ndarray (H, W, C), any real dtype
    stretch : bool
        Map the image's own min..max to 0..255 (weights, templates).  Without
        it, values already in 0..255 are rounded and kept, and other ranges
        are stretched.

    Returns
    -------
    ndarray (H, W, C) uint8
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and not stretch:
        return arr
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if stretch or lo < 0 or hi > 255:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def png_data_url(image: np.ndarray, stretch: bool = False) -> str:
    """A PNG data URL of one (H, W, C) image with C = 1 or 3 (else the first channel).

    Parameters
    ----------
    image : ndarray (H, W, C)
    stretch : bool
        See :func:`to_uint8`.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``.
    """
    arr = to_uint8(image, stretch)
    if arr.ndim == 3 and arr.shape[2] not in (1, 3):
        arr = arr[..., :1]
    im = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    if max(im.size) > MAX_SIDE:
        scale = MAX_SIDE / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))),
                       Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    # compress_level 1: these images are a few KB, speed matters more than bytes
    im.save(buf, format="PNG", compress_level=1)
    return _PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")
