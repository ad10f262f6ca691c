"""Decoding image files into arrays: the part of ``folder:`` that runs in workers.

Only numpy and Pillow are used here, so a worker process starts quickly.  A
worker receives file paths and options (never pixel data) and sends back one
uint8 array per chunk of files plus the reason for each file it could not read.

:func:`decode_one` is the reference for a single file; :func:`decode_chunk`
decodes many files into one block, the unit of work of the thread and process
pools in :mod:`imgcls.datasets.folder`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MODES = {"RGB": 3, "L": 1}


def _open_checked(path: str, max_pixels: int | None):
    """Open ``path`` lazily (header only); a reason string when it is over ``max_pixels``."""
    im = Image.open(path)
    width, height = im.size
    # Checked on the header, before any pixel is decoded; per call, so Pillow's
    # global MAX_IMAGE_PIXELS is never touched.
    if max_pixels is not None and width * height > max_pixels:
        im.close()
        return f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}"
    return im


def _pixels(im, mode: str, size: tuple[int, int] | None):
    """The opened image ``im`` decoded, in ``mode`` and (height, width) ``size``."""
    if size is not None and im.format == "JPEG" and im.size != (size[1], size[0]):
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly (DCT scaling): much
        # less work for a large photo that is resized down anyway.  draft()
        # never goes below the requested size, so the resize below still sets
        # the exact size.  The mode is left to convert() so that colours are
        # the same as without draft().
        im.draft(None, (size[1], size[0]))
    im.load()
    if im.mode != mode:
        im = im.convert(mode)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return im


# What an unreadable file raises.  OSError covers "cannot identify image file"
# and "image file is truncated".
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, IndexError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"over Pillow's decompression-bomb limit ({exc})"
    return f"corrupt or truncated image ({type(exc).__name__}: {exc})"


def decode_one(path: str, mode: str, size: tuple[int, int] | None,
               max_pixels: int | None) -> np.ndarray | str:
    """One image as an array (H, W, C) uint8, or the reason it cannot be read.

    The plain reference for :func:`decode_chunk`.
    """
    try:
        im = _open_checked(path, max_pixels)
        if isinstance(im, str):
            return im
        with im:
            out = np.asarray(_pixels(im, mode, size), dtype=np.uint8)
    except _UNREADABLE as exc:
        return _reason(exc)
    return out.reshape(out.shape[0], out.shape[1], MODES[mode])


def decode_chunk(paths: list[str], mode: str, size: tuple[int, int] | None,
                 max_pixels: int | None, stop_on_error: bool
                 ) -> tuple[np.ndarray | None, list[int], list[tuple[int, str]],
                            tuple[int, tuple[int, ...]] | None]:
    """Decode ``paths`` into one block.

    Parameters
    ----------
    paths : list of str
    mode, size, max_pixels
        As for :func:`decode_one`.
    stop_on_error : bool
        Return at the first unreadable file (the caller raises on it, so the
        rest of the chunk would be decoded for nothing).

    Returns
    -------
    block : ndarray (k, H, W, C) uint8, or None when no file was read
        The decoded images, in order.
    kept : list of int
        Index into ``paths`` of each row of ``block``.
    errors : list of (int, str)
        Index into ``paths`` and reason, per unreadable file.
    mismatch : (int, shape) or None
        The first image whose (H, W, C) differs from ``block``'s; decoding
        stops there (the caller reports the two files).
    """
    channels = MODES[mode]
    block: np.ndarray | None = None
    kept: list[int] = []
    errors: list[tuple[int, str]] = []
    # decode_one() inlined: for a 32x32 PNG the per-file Python overhead is most
    # of the time, and writing into the block through the image's array
    # interface saves an intermediate array.
    for j, path in enumerate(paths):
        try:
            im = _open_checked(path, max_pixels)
            if isinstance(im, str):
                errors.append((j, im))
                if stop_on_error:
                    break
                continue
            with im:  # closes the file (GIF/WebP keep it open after load())
                im = _pixels(im, mode, size)
                shape = (im.size[1], im.size[0], channels)
                if block is None:
                    block = np.empty((len(paths) - j, *shape), np.uint8)
                elif shape != block.shape[1:]:
                    return block[:len(kept)], kept, errors, (j, shape)
                row = block[len(kept)]
                (row[..., 0] if channels == 1 else row)[...] = im
        except _UNREADABLE as exc:
            errors.append((j, _reason(exc)))
            if stop_on_error:
                break
            continue
        kept.append(j)
    return (None if block is None else block[:len(kept)]), kept, errors, None
