"""Read an image file into the input shape of a trained model (for ``imgcls predict``).

Conversion rules (applied in this order; anything else is an
:class:`~imgcls.errors.ImageError` naming the file):

* The file is decoded with Pillow (any format Pillow reads; the first frame of
  an animation).  An unreadable, truncated or over-large file is an error.
* Transparency (modes ``RGBA``, ``LA``, ``PA``, and palette images with a
  transparent colour) is composited onto **black**, because the image sets
  imgcls learns from (MNIST, digits) draw ink on a black background; a
  transparent background therefore becomes that background.
* Channels: a 1-channel model gets luminance (``L``, ITU-R 601-2: 0.299 R +
  0.587 G + 0.114 B) of colour images; a 3-channel model gets ``RGB``, a grey
  image being copied to the three channels.  ``CMYK``/``YCbCr``/palette images
  are converted to RGB first.  16-bit greyscale (``I;16``) is scaled to 8 bits
  (>> 8).  32-bit integer or float images (``I``, ``F``) have no agreed range,
  and a model with another channel count (e.g. 2 or 4) has no agreed
  conversion: both are errors.
* Size: resized to the model's (H, W) with Pillow's bilinear filter (area
  averaging when shrinking, ``reducing_gap``), ignoring the aspect ratio -- the
  training images were all H x W, and cropping would lose content silently.

The result is uint8 (1, H, W, C), what the model was trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ImageError

__all__ = ["read_image_for_model"]


def _flatten_alpha(img):
    """Palette to RGB(A), then transparency composited onto opaque black."""
    from PIL import Image

    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        grey = img.mode == "LA"
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, img.convert("RGBA")).convert("L" if grey else "RGB")
    return img


def read_image_for_model(path: str | os.PathLike, image_shape) -> np.ndarray:
    """Read ``path`` and convert it to a model's input.

    Parameters
    ----------
    path : str or path-like
        An image file.
    image_shape : tuple (H, W, C)
        The model's ``image_shape_`` (C = 1 or 3).

    Returns
    -------
    image : ndarray of shape (1, H, W, C) uint8

    Raises
    ------
    ImageError
        The file cannot be read or decoded, or cannot be converted unambiguously.
    ConfigError
        The model was not trained on images (``image_shape`` is None).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if image_shape is None:
        raise ConfigError("this model was trained on feature vectors, not images; "
                          "it cannot classify an image file")
    if len(image_shape) != 3:
        raise ConfigError(f"model input shape {tuple(image_shape)} is not (H, W, C)")
    H, W, C = (int(s) for s in image_shape)
    if C not in (1, 3):
        raise ImageError(f"{path}: the model expects {C} channels; only 1 (grey) or 3 (RGB) "
                         "can be made from an image file unambiguously")
    try:
        with Image.open(path) as img:
            img.seek(0)
            img.load()
            img = _flatten_alpha(img)
            mode = img.mode
            if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
                arr = (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
                img = Image.fromarray(arr, mode="L")
            elif mode in ("I", "F"):
                raise ImageError(f"{path}: mode {mode!r} (32-bit {'integer' if mode == 'I' else 'float'} "
                                 "pixels) has no agreed 8-bit range; convert it to an 8-bit image first")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            elif mode == "1":
                img = img.convert("L")
            if img.mode not in ("L", "RGB"):
                raise ImageError(f"{path}: image mode {img.mode!r} cannot be converted to "
                                 f"{'grey' if C == 1 else 'RGB'} unambiguously")
            img = img.convert("L" if C == 1 else "RGB")
            if img.size != (W, H):
                img = img.resize((W, H), Image.Resampling.BILINEAR, reducing_gap=2.0)
            arr = np.asarray(img, dtype=np.uint8)
    except (ImageError, ConfigError):
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{path}: cannot read the image ({detail})") from None
    return arr.reshape(1, H, W, C)
