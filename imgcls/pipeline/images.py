"""Read an image file into the input shape of a trained model (for ``imgcls predict``).

The file is decoded by :func:`imgcls.datasets._decode.decode_file`, the same
function (and so the same rules for 16-bit, alpha, palette, CMYK, EXIF
orientation and resizing) as the ``folder:`` loader that the model may have
been trained from: asked about one of its training files, a model sees exactly
the pixels it was trained on.  In short: transparency is composited onto
black, 16-bit grey keeps its high byte, EXIF orientation is applied, a grey
model gets ITU-R 601-2 luma and an RGB model a grey image on three channels,
and the image is resized to the model's (H, W) with Pillow's bilinear filter,
aspect ratio ignored (the training images were all H x W, and cropping would
lose content silently).  32-bit (``I``, ``F``) images, and models with a channel
count other than 1 or 3, have no agreed conversion: both are errors.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError, ImageError

__all__ = ["read_image_for_model"]


def read_image_for_model(path: str | os.PathLike, image_shape) -> np.ndarray:
    """Read ``path`` and convert it to a model's input.

    Parameters
    ----------
    path : str or path-like
        An image file (PNG, JPEG, BMP, GIF, WebP or TIFF; a regular file).
    image_shape : tuple (H, W, C)
        The model's ``image_shape_`` (C = 1 or 3).

    Returns
    -------
    image : ndarray of shape (1, H, W, C) uint8

    Raises
    ------
    ImageError
        The file cannot be read or decoded (missing, a FIFO or other
        non-regular file, corrupt, over Pillow's decompression-bomb limit) or
        cannot be converted unambiguously; the message names the file.
    ConfigError
        The model was not trained on images (``image_shape`` is None).
    """
    from ..datasets._decode import decode_file

    if image_shape is None:
        raise ConfigError("this model was trained on feature vectors, not images; "
                          "it cannot classify an image file")
    if len(image_shape) != 3:
        raise ConfigError(f"model input shape {tuple(image_shape)} is not (H, W, C)")
    H, W, C = (int(s) for s in image_shape)
    if H <= 0 or W <= 0:
        raise ConfigError(f"model input shape {tuple(image_shape)} has no pixels")
    if C not in (1, 3):
        raise ImageError(f"{path}: the model expects {C} channels; only 1 (grey) or 3 (RGB) "
                         "can be made from an image file unambiguously")
    return decode_file(path, "L" if C == 1 else "RGB", (H, W))[np.newaxis]
