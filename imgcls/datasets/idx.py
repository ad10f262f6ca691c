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

import hashlib
import math
import os
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

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
#: Compressed bytes given to zlib per call: zlib copies what it leaves unused
#: (``unconsumed_tail``), so this bounds that copy.
IN_CHUNK = 1 << 16
#: Most content bytes zlib produces per call: a refused stream holds about twice
#: this (zlib's output blocks and the piece joined from them).
OUT_CHUNK = 1 << 18
#: Content bytes between two :class:`Mark` of a checked stream: parts of this size
#: are decompressed in parallel on the second pass.
MARK_EVERY = 4 << 20
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


class Mark(NamedTuple):
    """Where decompression of a stream can resume: after ``out`` content bytes, with
    zlib's ``state`` (a copy), the compressed bytes ``pending`` it had not used,
    and ``pos``, the offset of the next compressed bytes after those."""

    out: int
    pos: int
    pending: bytes | memoryview
    state: Any


def iter_gunzip(data, where: str | Path, limit: int, why: str, chunk: int = OUT_CHUNK,
                marks: list[Mark] | None = None) -> Iterator[bytes]:
    """The content of gzip ``data`` in pieces of at most ``chunk`` bytes.

    Holds O(chunk) memory however far the stream would expand: zlib is given
    :data:`IN_CHUNK` compressed bytes at a time and asked for at most
    ``chunk`` content bytes per call.  Several gzip members
    (``cat a.gz b.gz``) and zero padding between them are accepted, as
    :func:`gzip.decompress` does.

    Parameters
    ----------
    data : bytes-like
        A gzip file's bytes (the caller has checked :data:`GZIP_MAGIC`).
    where : str or Path
        Named in error messages.
    limit : int
        Most content bytes allowed; no more than ``limit + 1`` are ever produced.
    why : str
        Where ``limit`` comes from, for the message.
    chunk : int, default OUT_CHUNK
        Most bytes per piece.
    marks : list, optional
        Filled with a :class:`Mark` at the start and about every
        :data:`MARK_EVERY` content bytes, from which :func:`gunzip_exact` can
        decompress parts of the stream in parallel (~40 KB each: zlib's window
        and state).  Emptied when the stream has several members.

    Yields
    ------
    bytes
        Consecutive pieces of the content, ``limit`` bytes at most in all.

    Raises
    ------
    FormatError
        Truncated or corrupt stream (bad CRC-32 or length), or content longer than ``limit``.
    """
    view = memoryview(data).cast("B")
    total, pos = 0, min(IN_CHUNK, len(view))
    pending = view[:pos]
    try:
        while pending:
            inflater = zlib.decompressobj(_GZIP_WBITS)
            if marks is not None:
                if total:  # a second member: not split
                    marks.clear()
                    marks = None
                else:
                    marks.append(Mark(0, pos, pending, inflater.copy()))
            while not inflater.eof:
                piece = inflater.decompress(pending, min(chunk, limit - total + 1))
                pending = inflater.unconsumed_tail
                if piece:
                    total += len(piece)
                    if total > limit:
                        raise FormatError(f"{where}: decompresses to more than {limit} bytes "
                                          f"({why}); refusing to read further")
                    if marks is not None and total - marks[-1].out >= MARK_EVERY:
                        marks.append(Mark(total, pos, pending, inflater.copy()))
                    yield piece
                elif not pending:  # zlib has used all it was given: it needs more
                    pending = view[pos:pos + IN_CHUNK]
                    pos += len(pending)
                    if not pending:
                        raise FormatError(f"{where}: truncated gzip file ({len(data)} bytes; "
                                          f"the compressed stream ends early)")
            # Another member may follow, after zero padding.
            pending = inflater.unused_data.lstrip(b"\0")
            while not pending and pos < len(view):
                pending = bytes(view[pos:pos + IN_CHUNK]).lstrip(b"\0")
                pos = min(pos + IN_CHUNK, len(view))
    except zlib.error as exc:
        raise FormatError(f"{where}: corrupt gzip file ({exc})") from None


def gunzip_sha256(data, where: str | Path, limit: int | None, why: str,
                  marks: list[Mark] | None = None) -> tuple[str, int]:
    """SHA-256 (hex) and length of the content of gzip ``data``, holding O(chunk) memory.

    For a copy whose content is still to be verified: nothing of it is kept.
    ``limit`` None: no limit on the content's length (memory is O(chunk) either
    way).  ``marks`` is filled as in :func:`iter_gunzip`, for a later
    :func:`gunzip_exact`.  Raises :class:`FormatError` as :func:`iter_gunzip` does.
    """
    digest, size = hashlib.sha256(), 0
    for piece in iter_gunzip(data, where, sys.maxsize - 1 if limit is None else limit, why,
                             marks=marks):
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


def _fill(view: memoryview, out: memoryview, mark: Mark, end: int, where: str | Path) -> None:
    """Decompress content bytes ``mark.out`` to ``end`` of ``view`` into ``out``."""
    inflater, pending, pos, at = mark.state.copy(), mark.pending, mark.pos, mark.out
    try:
        while at < end:
            if not pending:
                pending = view[pos:pos + IN_CHUNK]
                pos += len(pending)
            piece = inflater.decompress(pending, min(OUT_CHUNK, end - at))
            pending = inflater.unconsumed_tail
            out[at:at + len(piece)] = piece
            at += len(piece)
            if not piece and not pending and pos >= len(view) or inflater.eof and at < end:
                raise FormatError(f"{where}: decompresses to fewer bytes than on the first pass "
                                  f"({at} < {end}); was the file changed meanwhile?")
    except zlib.error as exc:
        raise FormatError(f"{where}: corrupt gzip file ({exc})") from None


def gunzip_exact(data, where: str | Path, size: int, why: str,
                 marks: list[Mark] | None = None) -> memoryview:
    """The content of gzip ``data``, known to be ``size`` bytes, in one buffer of that size.

    For content whose checksum is known to be good (so its size is known): it is
    written piece by piece into one preallocated ``np.empty(size, uint8)``, the
    only copy made; :func:`parse_idx` then uses it without copying.  With the
    ``marks`` of the pass that checked the content (:func:`gunzip_sha256`), the
    parts between marks are decompressed in parallel threads (zlib releases the
    GIL), so that the second pass costs about 1 / cores of the first.

    Returns
    -------
    memoryview
        Writable, format ``"B"``, ``size`` bytes.

    Raises
    ------
    FormatError
        Damaged stream, or content of another length than ``size``.
    """
    out = memoryview(np.empty(size, np.uint8))
    if marks and marks[0].out == 0:
        ends = [mark.out for mark in marks[1:]] + [size]
        view = memoryview(data).cast("B")
        with ThreadPoolExecutor(max_workers=min(len(marks), os.cpu_count() or 1)) as pool:
            for job in [pool.submit(_fill, view, out, mark, end, where)
                        for mark, end in zip(marks, ends)]:
                job.result()
        return out
    at = 0
    for piece in iter_gunzip(data, where, size, why):
        out[at:at + len(piece)] = piece
        at += len(piece)
    if at != size:
        raise FormatError(f"{where}: decompresses to {at} bytes, expected {size} ({why})")
    return out


def _head(data, where: str | Path) -> bytes:
    """The first :data:`MAX_HEADER` bytes (or fewer) of the content of gzip ``data``."""
    head = bytearray()
    for piece in iter_gunzip(data, where, sys.maxsize - 1, "no limit", MAX_HEADER):
        head += piece[:MAX_HEADER - len(head)]
        if len(head) >= MAX_HEADER:
            break
    return bytes(head)


def gunzip(data, where: str | Path, max_size: int | None = None,
           why: str | None = None) -> bytearray:
    """The decompressed content of gzip ``data``, never more than a bound.

    The content is appended to one growing ``bytearray`` (amortized, no
    concatenated copies), so memory follows the content actually present.  The
    IDX header is read first: a file that is not IDX, or whose header declares
    more than ``max_size``, is refused before the rest is decompressed.

    Parameters
    ----------
    data : bytes-like
        A gzip file's bytes.
    where : str or Path
        Named in error messages.
    max_size : int, optional
        Most bytes the content may have, e.g. the official file's size.  The
        bound used is the smaller of it and the size the content's IDX header
        declares plus :data:`SLACK` (so that :func:`parse_idx` can report a
        slightly long file exactly).
    why : str, optional
        Where ``max_size`` comes from, for the message.

    Returns
    -------
    bytearray
        The content, at most the bound.

    Raises
    ------
    FormatError
        Not gzip, truncated or corrupt stream (bad CRC, bad length), no IDX
        header or one declaring more than ``max_size``, or content longer than the
        bound; the message names ``where``.
    """
    if bytes(data[:2]) != GZIP_MAGIC:
        raise FormatError(f"{where}: not a gzip file (starts with {_preview(data)})"
                          + _html_hint(data))
    # A header may declare more than any machine holds; the stream itself (at
    # most ~1032 x its size for deflate) then ends first.
    declared = _declared_total(_head(data, where), where)
    if max_size is not None and declared > max_size:
        raise FormatError(f"{where}: its IDX header declares {declared} bytes, more than "
                          f"{max_size} ({why or 'the limit for this file'}); refusing to "
                          f"decompress it")
    limit = min(declared + SLACK, sys.maxsize - 1)
    if max_size is not None and max_size < limit:
        limit = max_size
        why = why or "the limit for this file"
    else:
        why = "the size its IDX header declares"
    out = bytearray()
    for piece in iter_gunzip(data, where, limit, why):
        out += piece
    return out


def decode_maybe_gzip(data: bytes, where: str | Path, max_size: int | None = None,
                      why: str | None = None) -> tuple[bytes | bytearray, bytes | None]:
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
                    why: str | None = None) -> tuple[bytes | bytearray, bytes | None]:
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
    content : bytes or bytearray
        The decompressed bytes (a bytearray, from :func:`gunzip`, when gzip).
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


def sha256_maybe_gzip(path: str | Path, max_size: int | None,
                      why: str | None = None) -> tuple[str, bool]:
    """SHA-256 (hex) of the content of file ``path``, gzipped or not, holding O(chunk) memory.

    For checking a copy against an official checksum: nothing of the content is
    kept, and neither a gzip stream nor a plain file is read past ``max_size``
    content bytes.

    Parameters
    ----------
    path : str or Path
        Must be a regular file (a FIFO or device is refused without blocking).
    max_size : int or None
        Most bytes the content may have, e.g. the official file's size (None:
        no limit; memory is O(chunk) either way).
    why : str, optional
        Where ``max_size`` comes from, for the message.

    Returns
    -------
    sha256 : str
    compressed : bool
        Whether the file is gzip.

    Raises
    ------
    DatasetError
        ``path`` is missing, unreadable or not a regular file.
    FormatError
        A ``*.gz`` that is not gzip, a corrupt or truncated stream, or content
        longer than ``max_size``.
    """
    why = why or "the limit for this file"
    if max_size is None:
        max_size = sys.maxsize - 1
    with open_regular(path, error=DatasetError, what="IDX file") as f:
        head = f.read(MAX_HEADER)
        if head[:2] == GZIP_MAGIC:
            return gunzip_sha256(head + f.read(), path, max_size, why)[0], True
        if Path(path).suffix == ".gz":
            raise FormatError(f"{path}: not a gzip file (starts with {_preview(head)})"
                              + _html_hint(head))
        digest, size, piece = hashlib.sha256(), 0, head
        while piece:
            size += len(piece)
            if size > max_size:
                raise FormatError(f"{path}: {f.seek(0, 2)} bytes, more than {max_size} "
                                  f"({why}); refusing to read it")
            digest.update(piece)
            piece = f.read(OUT_CHUNK)
    return digest.hexdigest(), False


def parse_idx(data, where: str | Path, ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a native-endian, writable array.

    Parameters
    ----------
    data : bytes-like
        The (decompressed) file content.  A writable buffer (bytearray, or the
        memoryview of :func:`gunzip_exact`) is used in place when its values are
        single bytes, e.g. MNIST's uint8: the array is a view of it, not a copy.
    where : str or Path
        The file's name, used in error messages.
    ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    ndarray of the header's shape, e.g. (60000, 28, 28) uint8; it may share
    memory with a writable ``data``.

    Raises
    ------
    FormatError
        Wrong magic number, unknown type code, wrong ``ndim``, or a payload
        shorter (truncated) or longer than the header's dimensions say.  The
        expected size is computed with Python integers and compared with
        ``len(data)`` before any array is made, so no product of dimensions can
        overflow.  No other exception escapes for any ``data``.
    """
    shape, dtype, header = declared_size(bytes(data[:MAX_HEADER]), where)
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
    if array.flags.writeable and array.flags.aligned and array.dtype.isnative:
        return array  # over a buffer made for it (e.g. by gunzip_exact): no copy
    # A copy makes the array writable, aligned and native-endian (frombuffer over
    # bytes is read-only).
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, ndim: int | None = None,
             max_size: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or not, within bounds (see :func:`read_maybe_gzip`
    and :func:`parse_idx`)."""
    content, _ = read_maybe_gzip(path, max_size)
    return parse_idx(content, path, ndim)


def _preview(data) -> str:
    return repr(bytes(data[:16]))


def _html_hint(data) -> str:
    head = bytes(data[:512]).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return " — it looks like an HTML/XML page, e.g. an error page saved by a failed download"
    return ""
