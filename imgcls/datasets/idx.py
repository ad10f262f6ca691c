"""The IDX file format of MNIST and Fashion-MNIST, gzipped or not, read within bounds.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the values in C order.  Parsing is one
``np.frombuffer`` over the whole payload (no Python loop over images).

Nothing here holds more than a file may legitimately hold: a gzip stream is
inflated incrementally and stopped at a cap (the official file's size when the
caller knows it, else the size the IDX header declares), a plain file is read
no further than that cap, and the header's dimensions are multiplied as Python
integers and compared with the bytes present before any array is made.  Every
problem with a file is a :class:`~imgcls.errors.FormatError` (or, for a path
that is missing or not a regular file, a :class:`~imgcls.errors.DatasetError`)
naming the file and the cause.
"""

from __future__ import annotations

import math
import sys
import zlib
from pathlib import Path

import numpy as np

from .._files import open_regular
from ..errors import DatasetError, FormatError
from .download import read_upto

# IDX type code -> numpy dtype (values are stored big-endian)
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"
#: The longest IDX header: the magic number and 255 (the most one byte can count)
#: dimensions of 4 bytes each.
MAX_HEADER = 4 + 4 * 255
#: How far past the header's size a file is still read, so that a slightly long
#: file is reported with its exact length instead of "more than".
SLACK = 1 << 16
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect a gzip header and check CRC-32 and size


def declared_size(header: bytes, where: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape, dtype and header length an IDX header declares.

    Parameters
    ----------
    header : bytes
        The start of the (decompressed) file; at least the whole header.
    where : str or Path
        Named in error messages.

    Returns
    -------
    shape : tuple of int
    dtype : numpy dtype (big-endian as stored)
    header_len : int
        ``4 + 4 * ndim``; the data take ``prod(shape) * dtype.itemsize`` bytes after it
        (computed with Python integers: no overflow).

    Raises
    ------
    FormatError
        Too short, wrong magic number or unknown type code.
    """
    if len(header) < 4:
        raise FormatError(f"{where}: truncated IDX file ({len(header)} bytes, the header alone "
                          f"needs at least 4)")
    if header[0] != 0 or header[1] != 0 or header[2] not in IDX_DTYPES:
        raise FormatError(f"{where}: wrong magic number 0x{header[:4].hex()} — not an IDX file "
                          f"(expected 0x0000TTNN with type TT in "
                          f"{sorted(f'{t:02x}' for t in IDX_DTYPES)})" + _html_hint(header))
    dtype, nd = IDX_DTYPES[header[2]], header[3]
    header_len = 4 + 4 * nd
    if len(header) < header_len:
        raise FormatError(f"{where}: truncated IDX header ({len(header)} bytes, needs "
                          f"{header_len})")
    shape = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    return shape, dtype, header_len


def _declared_total(header: bytes, where: str | Path) -> int:
    shape, dtype, header_len = declared_size(header, where)
    return header_len + math.prod(shape) * dtype.itemsize


def _inflate(data: bytes, where: str | Path, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the content of gzip ``data``, and whether more follow.

    Incremental: zlib never produces more than ``limit + 1`` bytes, however
    much the stream would expand to.  Several gzip members (``cat a.gz b.gz``)
    and zero padding between them are accepted, as :func:`gzip.decompress` does.
    """
    parts: list[bytes] = []
    total = 0
    rest = data
    try:
        while True:
            inflater = zlib.decompressobj(_GZIP_WBITS)
            piece = inflater.decompress(rest, limit - total + 1)
            parts.append(piece)
            total += len(piece)
            if total > limit:
                return b"".join(parts)[:limit], True
            if not inflater.eof:
                raise FormatError(f"{where}: truncated gzip file ({len(data)} bytes; the "
                                  f"compressed stream ends early)")
            rest = inflater.unused_data.lstrip(b"\0")
            if not rest:
                return b"".join(parts), False
    except zlib.error as exc:
        raise FormatError(f"{where}: corrupt gzip file ({exc})") from None


def gunzip(data: bytes, where: str | Path, max_size: int | None = None,
           why: str | None = None) -> bytes:
    """The decompressed content of gzip ``data``, never more than a bound.

    Parameters
    ----------
    data : bytes
        A gzip file's bytes.
    where : str or Path
        Named in error messages.
    max_size : int, optional
        Most bytes the content may have, e.g. the official file's size.  Default:
        the size the content's IDX header declares (plus :data:`SLACK`, so that
        :func:`parse_idx` can report a slightly long file exactly).
    why : str, optional
        Where ``max_size`` comes from, for the message.

    Returns
    -------
    bytes
        The content, at most ``max_size`` bytes.

    Raises
    ------
    FormatError
        Not gzip, truncated or corrupt stream (bad CRC, bad length), or content
        longer than the bound; the message names ``where``.
    """
    if data[:2] != GZIP_MAGIC:
        raise FormatError(f"{where}: not a gzip file (starts with {_preview(data)})"
                          + _html_hint(data))
    if max_size is None:
        head, _ = _inflate(data, where, MAX_HEADER)
        # A header may declare more than any machine holds; the stream itself
        # (at most ~1032 x its size for deflate) then ends first.
        limit = min(_declared_total(head, where) + SLACK, sys.maxsize - 1)
        why = why or "the size its IDX header declares"
    else:
        limit = max_size
        why = why or "the limit for this file"
    content, more = _inflate(data, where, limit)
    if more:
        raise FormatError(f"{where}: decompresses to more than {limit} bytes ({why}); "
                          f"refusing to read further")
    return content


def decode_maybe_gzip(data: bytes, where: str | Path, max_size: int | None = None,
                      why: str | None = None) -> tuple[bytes, bytes | None]:
    """``(content, compressed)`` of bytes read from file ``where``.

    ``compressed`` is ``data`` when it is gzip (else None) and ``content`` the
    decompressed bytes (bounded as in :func:`gunzip`); a file named ``*.gz``
    that is not gzip (e.g. an HTML error page saved under the archive's name)
    raises :class:`FormatError`.  Uncompressed ``data`` longer than
    ``max_size`` raises :class:`FormatError` too.
    """
    if data[:2] != GZIP_MAGIC:
        if Path(where).suffix == ".gz":
            raise FormatError(f"{where}: not a gzip file (starts with {_preview(data)})"
                              + _html_hint(data))
        if max_size is not None and len(data) > max_size:
            raise FormatError(f"{where}: {len(data)} bytes, more than {max_size} "
                              f"({why or 'the limit for this file'})")
        return data, None
    return gunzip(data, where, max_size, why), data


def read_maybe_gzip(path: str | Path, max_size: int | None = None,
                    why: str | None = None) -> tuple[bytes, bytes | None]:
    """Read file ``path`` (gzipped or not) within bounds; return ``(content, compressed)``.

    Parameters
    ----------
    path : str or Path
        Must be a regular file (a FIFO or device is refused without blocking).
    max_size : int, optional
        Most bytes the (decompressed) content may have; default: what its IDX
        header declares (plus :data:`SLACK`).  A plain file is never read past
        it; a gzip file is read whole (it is the input) and inflated up to it.
    why : str, optional
        Where ``max_size`` comes from, for the message.

    Returns
    -------
    content : bytes
        The decompressed bytes.
    compressed : bytes or None
        The file's bytes when it is gzip.

    Raises
    ------
    DatasetError
        ``path`` is missing, unreadable or not a regular file.
    FormatError
        A ``*.gz`` that is not gzip, a corrupt or truncated stream, or content
        over the bound.
    """
    with open_regular(path, error=DatasetError, what="IDX file") as f:
        head = f.read(MAX_HEADER)
        if head[:2] == GZIP_MAGIC:
            data = head + f.read()
            return gunzip(data, path, max_size, why), data
        if Path(path).suffix == ".gz":
            raise FormatError(f"{path}: not a gzip file (starts with {_preview(head)})"
                              + _html_hint(head))
        if max_size is None:
            limit = min(_declared_total(head, path) + SLACK, sys.maxsize - 1)
            why = why or "the size its IDX header declares"
        else:
            limit = max_size
            why = why or "the limit for this file"
        data = head[:limit + 1] + read_upto(f, max(0, limit - len(head)))
        if len(data) > limit:
            size = f.seek(0, 2)
            raise FormatError(f"{path}: {size} bytes, more than {limit} ({why}); "
                              f"refusing to read it")
        return data, None


def parse_idx(data: bytes, where: str | Path, ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a native-endian, writable array.

    Parameters
    ----------
    data : bytes
        The (decompressed) file content.
    where : str or Path
        The file's name, used in error messages.
    ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    ndarray of the header's shape, e.g. (60000, 28, 28) uint8.

    Raises
    ------
    FormatError
        Wrong magic number, unknown type code, wrong ``ndim``, or a payload
        shorter (truncated) or longer than the header's dimensions say.  The
        expected size is computed with Python integers and compared with
        ``len(data)`` before any array is made, so no product of dimensions can
        overflow.  No other exception escapes for any ``data``.
    """
    shape, dtype, header = declared_size(data[:MAX_HEADER], where)
    if ndim is not None and len(shape) != ndim:
        raise FormatError(f"{where}: IDX header says {len(shape)} dimensions, expected {ndim}")
    count = math.prod(shape)
    expected = count * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise FormatError(f"{where}: truncated IDX file: header says shape {shape} "
                          f"({expected} bytes of data) but only {actual} bytes follow")
    if actual > expected:
        raise FormatError(f"{where}: size disagrees with the IDX header: shape {shape} "
                          f"needs {expected} bytes of data but {actual} follow")
    try:
        array = np.frombuffer(data, dtype, count, header).reshape(shape)
    except ValueError as exc:  # e.g. (0, 2**32-1, 2**32-1, ...) or more dims than numpy has
        raise FormatError(f"{where}: IDX shape {shape} cannot be an array ({exc})") from None
    # A copy makes the array writable and native-endian (frombuffer over bytes is read-only).
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, ndim: int | None = None,
             max_size: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or not, within bounds (see :func:`read_maybe_gzip`
    and :func:`parse_idx`)."""
    content, _ = read_maybe_gzip(path, max_size)
    return parse_idx(content, path, ndim)


def _preview(data: bytes) -> str:
    return repr(data[:16])


def _html_hint(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return " — it looks like an HTML/XML page, e.g. an error page saved by a failed download"
    return ""
