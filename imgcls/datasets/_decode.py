"""The one decoding path from an image file to a model input.

Both the ``folder:`` loader (in this process, in its threads and in its forked
worker processes) and ``imgcls predict`` (:mod:`imgcls.pipeline.images`) decode
through :func:`decode_file`, so a model is asked about exactly the pixels it was
trained on.  Only numpy and Pillow are imported here, so a worker starts quickly.

Rules, in the order they are applied:

1. **Files.**  Only regular files are opened (:func:`imgcls._files.open_regular`:
   a FIFO, socket or device is refused without blocking).  Only the formats in
   :data:`FORMATS` are identified, from the content, not the name: this keeps
   Pillow's rarer parsers (and its EPS plugin, which runs Ghostscript) away from
   files that strangers hand out.  The first frame of an animation is used.
2. **Size limits.**  ``width * height`` from the header is checked against
   ``max_pixels`` before any pixel is decoded; Pillow's own decompression-bomb
   refusal (above twice ``PIL.Image.MAX_IMAGE_PIXELS``) is reported like any
   unreadable file.
   The header must also be one its data can fill (:func:`_check_data`, before
   Pillow allocates the image): uncompressed rows must be in the file, deflate
   and LZW data expand at most :data:`MAX_EXPANSION` times (TIFF:
   :data:`TIFF_EXPANSION`), Huffman-coded JPEG data codes at most
   :data:`JPEG_MAX_PIXELS_PER_BYTE` pixels a byte, and background that no data
   codes (a GIF canvas around its frame, pixels a BMP RLE skips) is accepted up
   to :data:`MAX_UNCOVERED_CANVAS_PIXELS`, as is any WebP; a larger WebP may
   claim at most :data:`WEBP_MAX_PIXELS_PER_BYTE` pixels a byte of file (a
   policy: WebP itself has no bound).  Running out of memory while
   decoding is reported like an unreadable file.
3. **EXIF orientation is applied** (the Orientation tag as
   :meth:`PIL.Image.Image.getexif` reads it, XMP ``tiff:Orientation`` included),
   as :func:`PIL.ImageOps.exif_transpose` would: images are learnt and
   classified the way a viewer shows them, which is the way a person labelled
   them.  A camera that rotates its pixels and one that writes the tag then
   give the same input.  Unreadable metadata counts as "no rotation", as in a
   viewer.  Sizes (``image_size``, "images have different sizes") are those of
   the rotated image.
4. **Pixel formats** to 8-bit ``L`` or ``RGB``:

   * 16-bit greyscale (``I;16*``) keeps its high byte (``>> 8``), as Pillow
     itself does for 16-bit RGB and grey+alpha PNGs;
   * transparency (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, and a palette,
     grey or RGB image with a transparent index or colour, as PNG ``tRNS`` and
     GIF give) is composited onto **black**:
     ``round(colour * alpha / 255)`` per channel.  The image sets imgcls learns
     from (MNIST, digits) draw ink on a black background;
   * palette, ``1`` (bilevel, 0/255), ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``,
     ``RGBX`` are converted by Pillow (CMYK naively: ICC profiles are ignored);
   * 32-bit integer and float pixels (``I``, ``F``) have no agreed 8-bit range:
     an error, never a guess;
   * grey for ``mode="L"`` is Pillow's ITU-R 601-2 luma (0.299 R + 0.587 G +
     0.114 B); ``mode="RGB"`` repeats a grey image over three channels.
5. **Resizing** (only when ``size`` is given and differs): Pillow's bilinear
   filter (``Image.resize(..., BILINEAR)``, antialiased when shrinking), aspect
   ratio ignored.  A JPEG is first decoded at the smallest DCT scale (1/2, 1/4,
   1/8) that is still at least the requested size (``Image.draft``): much less
   work for a photo that is shrunk anyway.

:func:`decode_file` is the single-file entry point (an array, or
:class:`~imgcls.errors.ImageError` naming the file and the cause), and
:func:`decode_bytes` the same for a file's content already in memory (an
upload to ``imgcls serve``: request data never becomes a path);
:func:`decode_chunk` decodes many files into blocks, the unit of work of the
pools in :mod:`imgcls.datasets.folder`; :func:`header_sizes` reads only the
headers, so that a folder's sizes can be compared before a large buffer is
allocated.
"""

from __future__ import annotations

import io
import os
import re
import struct

import numpy as np
from PIL import Image

from .._files import open_regular
from ..errors import ConfigError, ImageError

__all__ = ["MODES", "FORMATS", "UNREADABLE", "decode_file", "decode_bytes", "decode_chunk",
           "header_sizes"]

MODES = {"RGB": 3, "L": 1}

# Pillow format names identified from the content.  DIB is BMP without its file
# header (``.dib``), TIFF is read by ``imgcls predict``; MPO (several JPEGs in
# one file, from cameras) is found by the JPEG plugin.
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "WEBP", "TIFF")

# Largest decoded block (bytes) that decode_chunk fills before it starts
# another: a chunk of 256 files whose first image is large must not reserve
# 256 times that image before the second file shows whether sizes agree.
# 64 MiB holds a whole chunk of images up to ~256 KB (e.g. 290 x 290 RGB), so
# the common case is one block per chunk.
BLOCK_BYTES = 64 << 20

# Files smaller than this are read with one system call and parsed from
# memory: for a 32 x 32 image, Pillow's many small reads, seeks and tells on a
# buffered file cost ~5 % of the decoding; 64 KiB covers thumbnails and CIFAR-
# or MNIST-sized images, and bounds the copy for a large photo.
IN_MEMORY_BYTES = 64 << 10

# Largest factor by which each compressed stream can expand, output bytes per
# input byte, so that a header cannot claim more pixels than its data can fill
# (Pillow allocates the whole image before it finds the data missing).  Upper
# bounds, so that no valid image is refused:
# * "zip" (PNG's deflate): 1032:1, the deflate format's limit (a 258-byte match
#   costs at least 2 bits: 258 * 8 / 2 = 1032; zlib's technical details page);
# * "gif" (LZW, codes of at most 12 bits): a code stands for at most 4096 bytes
#   (one table entry of a 4096-entry table) and takes at least 12 bits once
#   strings can be that long (a code of w < 12 bits stands for at most 2 ** w
#   bytes, a smaller ratio), so 4096 * 8 / 12 = 2730.7, rounded up.
# Raw (uncompressed) data expands 1:1: its stated rows must be in the file.
# Arithmetic-coded JPEG, WebP (a one-symbol Huffman code costs 0 bits) and
# libtiff's codecs (CCITT fax) have no useful bound; those formats rely on
# max_pixels and Pillow's decompression-bomb limit.
MAX_EXPANSION = {"zip": 1032, "gif": 2731}

# The same bounds for the compressions libtiff decodes (Pillow's names, from
# ``im._compression``): LZW and deflate as above, PackBits at most 128 bytes
# for a 2-byte run (64:1), none 1:1.  CCITT fax and JPEG-in-TIFF: no bound.
TIFF_EXPANSION = {"raw": 1, "packbits": 64, "tiff_lzw": 2731, "tiff_deflate": 1032,
                  "tiff_adobe_deflate": 1032}

# A BMP RLE run of 2 bytes codes at most 255 pixels (RLE8; RLE4 the same count),
# so 128 pixels a byte; its "delta", "end of line" and "end of bitmap" codes
# skip pixels, which are then background like a GIF's canvas (below).
BMP_RLE_PIXELS_PER_BYTE = 128

# Most pixels one byte of Huffman-coded JPEG data can stand for: a scan codes
# every 8x8 block of its components with at least one Huffman code, of at
# least 1 bit (ITU-T T.81 F.1.2, G.1.2), and a block covers at most 32 x 32
# pixels (a component sampled 1 where another is sampled 4, the largest
# factor, T.81 A.1.1): 32 * 32 * 8.  libjpeg pads a file cut short with grey,
# so without this a 600-byte JPEG claiming 8000 x 8000 "decodes".
JPEG_MAX_PIXELS_PER_BYTE = 8192

# Start-of-frame markers of arithmetic-coded JPEG (SOF9-11, SOF13-15), whose
# expansion has no useful bound: those files are not checked.
_ARITHMETIC_SOF = re.compile(rb"\xff[\xc9\xca\xcb\xcd\xce\xcf]")

# A GIF's canvas (logical screen) may be larger than its first frame, and a
# BMP RLE may skip pixels: those are background, which no data bounds.  Images
# up to this many pixels are accepted whatever their data covers (4 Mpx: at
# the 8 bytes per pixel that decoding and converting hold, 32 MiB); larger ones
# must be covered by their data.
MAX_UNCOVERED_CANVAS_PIXELS = 1 << 22

# WebP has no format bound (a one-symbol Huffman code of lossless WebP costs 0
# bits), and Pillow allocates the whole canvas before it finds the data
# corrupt.  A policy, like the canvas rule above: a WebP over
# MAX_UNCOVERED_CANVAS_PIXELS may claim at most this many pixels per byte of
# file -- deflate's 1032:1, where real photographs take about a byte for every
# 5-50 pixels.
WEBP_MAX_PIXELS_PER_BYTE = 1032

# EXIF tag 0x0112 (Orientation) -> the transposition that shows the image
# upright (the table of PIL.ImageOps.exif_transpose).
ORIENTATION_TAG = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA = {"RGBA": "RGBA", "RGBa": "RGBA", "PA": "RGBA", "LA": "LA", "La": "LA"}
# Modes whose info["transparency"] names a transparent index or colour.
_TRANSPARENT_COLOUR = {"P": "RGBA", "L": "LA", "RGB": "RGBA", "1": "LA"}

# What Pillow raises on a file it cannot decode.  OSError covers "cannot
# identify image file" and "image file is truncated"; the others come from
# crafted headers and chunks (struct.error from short fields, SyntaxError and
# ValueError from plugins' checks, Lookup/Type/ArithmeticError from
# inconsistent tables).  DecompressionBombError is not an OSError.
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, LookupError, TypeError,
              ArithmeticError, struct.error, Image.DecompressionBombError)


class Unreadable(Exception):
    """Why one file is not decoded: ``args[0]`` is the reason, without the path."""

    @property
    def reason(self) -> str:
        return self.args[0]


class _NotRegular(ImageError):
    """open_regular's refusal; its message starts with the path."""


# Reason given when decoding (or converting, resizing) runs out of memory.
_NO_MEMORY = "too large to decode in the memory available (MemoryError)"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return _NO_MEMORY
    if isinstance(exc, Image.DecompressionBombError):
        return f"over Pillow's decompression-bomb limit ({exc})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return (f"corrupt or truncated image, or not in a format imgcls reads "
                f"({', '.join(FORMATS)})")
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"corrupt or truncated image ({type(exc).__name__}: {detail})"


def _open(f, max_pixels: int | None):
    """The image in ``f`` opened lazily (header only), checked against ``max_pixels``."""
    im = Image.open(f, formats=FORMATS)
    width, height = im.size
    # Checked on the header, before any pixel is decoded; per call, so Pillow's
    # global MAX_IMAGE_PIXELS is never touched.
    if max_pixels is not None and width * height > max_pixels:
        raise Unreadable(f"{width}x{height} = {width * height} pixels exceeds "
                         f"max_pixels={max_pixels}")
    _check_data(im, _file_size(f))
    return im


_SUB_BYTE = re.compile(r";([1-7])(?!\d)")


def _bits_lower_bound(rawmode) -> int:
    """Bits per pixel that ``rawmode`` packs, or a lower bound of them (1 or 8)."""
    rawmode = rawmode if isinstance(rawmode, str) else ""
    return 1 if rawmode.startswith("1") or _SUB_BYTE.search(rawmode) else 8


def _file_size(f) -> int:
    if isinstance(f, io.BytesIO):
        return len(f.getbuffer())
    return os.fstat(f.fileno()).st_size


def _arithmetic_jpeg(im) -> bool:
    """Whether the JPEG header Pillow has read (up to its first scan) may be arithmetic-coded.

    A marker-like pair inside another segment's payload also counts: the file
    is then only left unchecked.
    """
    fp = im.fp
    end = fp.tell()
    try:
        fp.seek(0)
        return _ARITHMETIC_SOF.search(fp.read(end)) is not None
    finally:
        fp.seek(end)


def _check_data(im, file_size: int) -> None:
    """Refuse an image whose data cannot fill the size its header claims.

    Checked on ``im.tile`` (the decoders Pillow will run, their extents and
    data offsets) before :meth:`load` allocates the image: raw tiles need
    their rows present, compressed ones at most :data:`MAX_EXPANSION` times
    the bytes after their offset.  Each needed size is a lower bound of what
    the decoder reads or writes, so a valid image always passes.
    """
    covered = 0
    for tile in im.tile:
        # (decoder name, extents, offset, args): a plain tuple before Pillow 11,
        # a named one since
        codec, extents, offset, args = tuple(tile)[:4]
        x0, y0, x1, y1 = extents
        w, h = max(0, x1 - x0), max(0, y1 - y0)
        covered += w * h
        if not w * h:
            continue
        have = max(0, file_size - (offset or 0))
        if codec == "raw":
            rawmode = args[0] if isinstance(args, tuple) else args
            row = (w * _bits_lower_bound(rawmode) + 7) // 8
            stride = args[1] if isinstance(args, tuple) and len(args) > 1 else 0
            stride = stride if isinstance(stride, int) and stride >= row else row
            need = (h - 1) * stride + row
            if need > have:
                raise Unreadable(f"truncated: {w}x{h} pixels need {need} bytes of raw "
                                 f"data, file has {have}")
        elif codec == "jpeg":
            if w * h > JPEG_MAX_PIXELS_PER_BYTE * have and not _arithmetic_jpeg(im):
                raise Unreadable(f"truncated or corrupt: {w}x{h} pixels are more than the "
                                 f"{have} bytes of JPEG data can code (at most "
                                 f"{JPEG_MAX_PIXELS_PER_BYTE} pixels a byte)")
        elif codec == "bmp_rle":
            if w * h > max(BMP_RLE_PIXELS_PER_BYTE * have, MAX_UNCOVERED_CANVAS_PIXELS):
                raise Unreadable(f"truncated or corrupt: {w}x{h} pixels, more than the {have} "
                                 f"bytes of RLE data can code (at most "
                                 f"{BMP_RLE_PIXELS_PER_BYTE} pixels a byte) and over "
                                 f"{MAX_UNCOVERED_CANVAS_PIXELS} pixels")
        elif (codec == "libtiff"
              and getattr(im, "_compression", None) in TIFF_EXPANSION):
            ratio = TIFF_EXPANSION[im._compression]
            rawmode = args[0] if isinstance(args, tuple) and args else ""
            need = h * ((w * _bits_lower_bound(rawmode) + 7) // 8)
            if need > ratio * have:
                raise Unreadable(f"truncated or corrupt: {w}x{h} pixels need {need} decoded "
                                 f"bytes, more than the {have} bytes of {im._compression} TIFF "
                                 f"data can hold (at most {ratio}:1)")
        elif codec in MAX_EXPANSION:
            ratio = MAX_EXPANSION[codec]
            if codec == "zip":  # a filter byte per row, then the packed pixels
                need = h * (1 + (w * _bits_lower_bound(args if isinstance(args, str)
                                                       else args[0]) + 7) // 8)
            else:  # GIF: one palette index per pixel
                need = w * h
            if need > ratio * have:
                raise Unreadable(f"truncated or corrupt: {w}x{h} pixels need {need} decoded "
                                 f"bytes, more than the {have} bytes of {codec} data "
                                 f"can hold (at most {ratio}:1)")
    width, height = im.size
    if (im.format == "GIF" and width * height > covered
            and width * height > MAX_UNCOVERED_CANVAS_PIXELS):
        raise Unreadable(f"canvas {width}x{height} is larger than its image data "
                         f"({covered} pixels) and over {MAX_UNCOVERED_CANVAS_PIXELS} pixels")
    if (im.format == "WEBP" and width * height > MAX_UNCOVERED_CANVAS_PIXELS
            and width * height > WEBP_MAX_PIXELS_PER_BYTE * file_size):
        raise Unreadable(f"truncated or corrupt: a WebP of {width}x{height} pixels in "
                         f"{file_size} bytes (over {MAX_UNCOVERED_CANVAS_PIXELS} pixels, "
                         f"at most {WEBP_MAX_PIXELS_PER_BYTE} pixels a byte are accepted)")


def _regular(path: str):
    """``path`` opened for Pillow (regular files only); a small file is read into memory."""
    try:
        f = open_regular(path, error=_NotRegular, what="file")
    except _NotRegular as exc:
        raise Unreadable(str(exc).removeprefix(f"{path}: ")) from None
    try:
        # One read: a read of a regular file is short only at its end (the
        # kernel does not interrupt it part-way), and a file cut short would
        # fail to decode as truncated, never decode to other pixels.
        head = os.read(f.fileno(), IN_MEMORY_BYTES)
        if len(head) < IN_MEMORY_BYTES:
            f.close()
            return io.BytesIO(head)
        f.seek(0)
        return f
    except BaseException:
        f.close()
        raise


def orientation(im) -> int:
    """The EXIF orientation (1..8) of an opened image; 1 when absent or unreadable.

    Pillow's getexif() finds it in a TIFF's own tags, ``info["exif"]`` or XMP.
    """
    info = im.info
    if (im.format != "TIFF" and "exif" not in info and "XML:com.adobe.xmp" not in info
            and "xmp" not in info):
        return 1  # the common case, without building an Exif object
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001  metadata a viewer would ignore
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


# Pixels composited per step: the temporaries (~25 bytes a pixel) stay ~2 MiB whatever the
# image's size, instead of ~25 bytes per pixel of the whole image.
_COMPOSITE_PIXELS = 1 << 16


def _composite_on_black(im):
    """An image with alpha composited onto opaque black (L or RGB)."""
    mode = _ALPHA[im.mode]
    src = im if im.mode == mode else im.convert(mode)
    width, height = src.size
    out = Image.new("L" if mode == "LA" else "RGB", src.size)
    step = max(1, _COMPOSITE_PIXELS // max(1, width))
    for top in range(0, height, step):
        arr = np.asarray(src.crop((0, top, width, min(height, top + step))))
        # round(c * a / 255): c * a / 255 is never k + 1/2 (255 is odd), so the
        # integer form below is exact rounding.
        colour = arr[..., :-1].astype(np.uint16)
        colour *= arr[..., -1:]
        colour += 127
        colour //= 255
        colour = colour.astype(np.uint8)
        out.paste(Image.fromarray(colour[..., 0] if mode == "LA" else colour, out.mode),
                  (0, top))
    _replace(im, src)
    return out


def _replace(old, new):
    """``new``, after freeing the pixels of ``old`` when it is another image.

    A decoding step's input is not needed once its output exists; freeing it
    at once keeps one full-size copy fewer alive while a large image is
    converted and resized.  (Closing twice, here and in a caller's ``with``,
    is harmless.)
    """
    if new is not old:
        old.close()
    return new


def _to_mode(im, mode: str):
    """``im`` (loaded) in ``mode`` ("L" or "RGB") under the rules of the module docstring."""
    if "transparency" in im.info and im.mode in _TRANSPARENT_COLOUR:
        # A transparent palette entry or colour (PNG tRNS, GIF): alpha from it.
        im = _replace(im, im.convert(_TRANSPARENT_COLOUR[im.mode]))
    if im.mode == mode:
        return im
    if im.mode in _ALPHA:
        im = _replace(im, _composite_on_black(im))
    elif im.mode in _SIXTEEN_BIT:
        im = _replace(im, Image.fromarray(
            (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8), "L"))
    elif im.mode in ("I", "F"):
        kind = "integer" if im.mode == "I" else "float"
        raise Unreadable(f"mode {im.mode!r} (32-bit {kind} pixels) has no agreed 8-bit range; "
                         f"convert it to an 8-bit image first")
    elif im.mode == "LAB":
        im = _replace(im, im.convert("RGB"))  # Pillow has no LAB -> L conversion
    return im if im.mode == mode else _replace(im, im.convert(mode))


def _decode(im, mode: str, size: tuple[int, int] | None):
    """The opened image ``im`` decoded, upright, in ``mode`` and (height, width) ``size``."""
    # A JPEG's EXIF is in its header, and draft() needs it; a PNG may store
    # its EXIF after the pixels, so other formats are asked after load().
    jpeg = im.format == "JPEG"
    turn = orientation(im) if jpeg else 1
    if size is not None and jpeg:
        # draft() never goes below the requested size (in the stored
        # orientation), so the resize below still sets the exact size.  The
        # mode is left to _to_mode so that colours are the same as without it.
        want = (size[0], size[1]) if turn in _SWAPS_SIDES else (size[1], size[0])
        if im.size != want:
            im.draft(None, want)
    im.load()
    if not jpeg:
        turn = orientation(im)
    im = _to_mode(im, mode)
    if turn != 1:
        im = _replace(im, im.transpose(_TRANSPOSE[turn]))
    if size is not None and im.size != (size[1], size[0]):
        im = _replace(im, im.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return im


def decode_file(path: str | os.PathLike, mode: str = "RGB", size: tuple[int, int] | None = None,
                max_pixels: int | None = None) -> np.ndarray:
    """Decode one image file into a model input.

    Parameters
    ----------
    path : str or path-like
    mode : {"RGB", "L"}
        Colour mode of the result (C = 3 or 1).
    size : (int, int), optional
        (height, width) to resize to; the image's own (upright) size if None.
    max_pixels : int, optional
        Largest ``width * height`` accepted, from the header.

    Returns
    -------
    image : ndarray of shape (H, W, C) uint8

    Raises
    ------
    ImageError
        The file is missing, not a regular file, not an image in
        :data:`FORMATS`, corrupt or truncated, over ``max_pixels`` or Pillow's
        decompression-bomb limit, claims more pixels than its data can
        fill, is too large for the memory available, or has 32-bit pixels;
        the message names
        ``path`` and the cause, in one line.
    ConfigError
        ``mode`` or ``size`` is not one of the above.
    """
    _check_mode_size(mode, size)
    return _decode_from(lambda: _regular(str(path)), str(path), mode, size, max_pixels)


def decode_bytes(data: bytes, mode: str = "RGB", size: tuple[int, int] | None = None,
                 max_pixels: int | None = None, name: str = "image") -> np.ndarray:
    """Decode one image held in memory (e.g. an upload) under the rules of :func:`decode_file`.

    Parameters
    ----------
    data : bytes
        The whole file's content; nothing touches the file system.
    mode, size, max_pixels
        As for :func:`decode_file`.
    name : str
        What the error message calls the image (e.g. an upload's field and index).

    Returns
    -------
    image : ndarray of shape (H, W, C) uint8

    Raises
    ------
    ImageError
        As :func:`decode_file` (bar the file-system causes), naming ``name``.
    ConfigError
        ``mode`` or ``size`` is not valid.
    """
    _check_mode_size(mode, size)
    return _decode_from(lambda: io.BytesIO(data), name, mode, size, max_pixels)


def _check_mode_size(mode, size) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if size is not None and not (len(size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ConfigError(f"size must be (height, width) positive ints or None, got {size!r}")


def _decode_from(opener, name: str, mode: str, size, max_pixels) -> np.ndarray:
    """The one image ``opener()`` gives (a file object), decoded; errors name ``name``."""
    try:
        with opener() as f, _open(f, max_pixels) as im:
            out = np.asarray(_decode(im, mode, size), dtype=np.uint8)
    except Unreadable as exc:
        raise ImageError(f"{name}: {exc.reason}") from None
    except (*UNREADABLE, MemoryError) as exc:
        raise ImageError(f"{name}: {_reason(exc)}") from None
    return out.reshape(out.shape[0], out.shape[1], MODES[mode])


def header_sizes(paths: list[str], max_pixels: int | None) -> list[tuple[int, int] | None]:
    """(height, width) of each upright image from its header alone; None when unreadable.

    Nothing is decoded.  A file over ``max_pixels`` or unreadable gets None:
    decoding reports it.  The size is the decoded one except for a PNG whose
    EXIF chunk follows the pixel data (rare): decoding checks sizes again.
    """
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            with _regular(path) as f, _open(f, max_pixels) as im:
                width, height = im.size
                turn = orientation(im)
            out.append((width, height) if turn in _SWAPS_SIDES else (height, width))
        except (Unreadable, *UNREADABLE):
            out.append(None)
    return out


def decode_chunk(paths: list[str], mode: str, size: tuple[int, int] | None,
                 max_pixels: int | None, stop_on_error: bool
                 ) -> tuple[list[np.ndarray], list[int], list[tuple[int, str]],
                            tuple[int, tuple[int, ...]] | None]:
    """Decode ``paths`` into blocks of images of one shape.

    Parameters
    ----------
    paths : list of str
    mode, size, max_pixels
        As for :func:`decode_file`.
    stop_on_error : bool
        Return at the first unreadable file (the caller raises on it, so the
        rest of the chunk would be decoded for nothing).

    Returns
    -------
    blocks : list of ndarray (k_i, H, W, C) uint8
        The decoded images in order, all of one shape; one block unless the
        images are large (a block holds at most :data:`BLOCK_BYTES`, so that
        nothing is reserved for images not yet seen to have that shape).
    kept : list of int
        Index into ``paths`` of each decoded image (the rows of the blocks, in order).
    errors : list of (int, str)
        Index into ``paths`` and reason, per unreadable file.
    mismatch : (int, shape) or None
        The first image whose (H, W, C) differs from the first one's;
        decoding stops there (the caller reports the two files).
    """
    channels = MODES[mode]
    blocks: list[np.ndarray] = []
    block: np.ndarray | None = None
    filled = 0
    kept: list[int] = []
    errors: list[tuple[int, str]] = []
    for j, path in enumerate(paths):
        try:
            with _regular(path) as f, _open(f, max_pixels) as im:
                im = _decode(im, mode, size)
                shape = (im.size[1], im.size[0], channels)
                if block is not None and shape != block.shape[1:]:
                    if filled:
                        blocks.append(block[:filled])
                    return blocks, kept, errors, (j, shape)
                if block is None or filled == len(block):
                    if block is not None:
                        blocks.append(block)
                    rows = max(1, min(len(paths) - j, BLOCK_BYTES // int(np.prod(shape))))
                    block, filled = np.empty((rows, *shape), np.uint8), 0
                # Written through the image's array interface: no intermediate array.
                row = block[filled]
                (row[..., 0] if channels == 1 else row)[...] = im
        except Unreadable as exc:
            errors.append((j, exc.reason))
            if stop_on_error:
                break
            continue
        except (*UNREADABLE, MemoryError) as exc:
            errors.append((j, _reason(exc)))
            if stop_on_error:
                break
            continue
        filled += 1
        kept.append(j)
    if block is not None and filled:
        blocks.append(block[:filled])
    return blocks, kept, errors, None
