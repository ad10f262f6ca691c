"""The IDX file format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the values in C order.  Parsing is one
``np.frombuffer`` over the whole payload (no Python loop over images).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import FormatError

# IDX type code -> numpy dtype (values are stored big-endian)
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"


def read_maybe_gzip(path: str | Path) -> tuple[bytes, bytes | None]:
    """Read ``path``; return ``(content, compressed)``.

    ``compressed`` is the file's bytes when it is gzipped (else None) and
    ``content`` the decompressed bytes.  A file named ``*.gz`` that is not
    gzip (e.g. an HTML error page saved under the archive's name) or a
    truncated/corrupt gzip stream raises :class:`FormatError` naming the file.
    """
    path = Path(path)
    return decode_maybe_gzip(path.read_bytes(), path)


def decode_maybe_gzip(data: bytes, path: str | Path) -> tuple[bytes, bytes | None]:
    """Like :func:`read_maybe_gzip` on bytes already read from ``path``."""
    path = Path(path)
    if data[:2] != GZIP_MAGIC:
        if path.suffix == ".gz":
            raise FormatError(f"{path}: not a gzip file (starts with {_preview(data)})"
                              + _html_hint(data))
        return data, None
    try:
        return gzip.decompress(data), data
    except EOFError:
        raise FormatError(f"{path}: truncated gzip file ({len(data)} bytes; the "
                          f"compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise FormatError(f"{path}: corrupt gzip file ({exc})") from None


def parse_idx(data: bytes, path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a native-endian, writable array.

    Parameters
    ----------
    data : bytes
        The (decompressed) file content.
    path : str or Path
        Only used in error messages.
    ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    ndarray of the header's shape, e.g. (60000, 28, 28) uint8.

    Raises
    ------
    FormatError
        Wrong magic number, unknown type code, wrong ``ndim``, or a payload
        shorter (truncated) or longer than the header's dimensions say.
    """
    if len(data) < 4:
        raise FormatError(f"{path}: truncated IDX file ({len(data)} bytes, the header alone "
                          f"needs at least 4)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise FormatError(f"{path}: wrong magic number 0x{data[:4].hex()} — not an IDX file "
                          f"(expected 0x0000TTNN with type TT in "
                          f"{sorted(f'{t:02x}' for t in IDX_DTYPES)})" + _html_hint(data))
    dtype, nd = IDX_DTYPES[data[2]], data[3]
    if ndim is not None and nd != ndim:
        raise FormatError(f"{path}: IDX header says {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise FormatError(f"{path}: truncated IDX header ({len(data)} bytes, needs {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", nd, 4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise FormatError(f"{path}: truncated IDX file: header says shape {shape} "
                          f"({expected} bytes of data) but only {actual} bytes follow")
    if actual > expected:
        raise FormatError(f"{path}: size disagrees with the IDX header: shape {shape} "
                          f"needs {expected} bytes of data but {actual} follow")
    array = np.frombuffer(data, dtype, expected // dtype.itemsize, header).reshape(shape)
    # A copy makes the array writable and native-endian (frombuffer over bytes is read-only).
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or not (see :func:`parse_idx`)."""
    content, _ = read_maybe_gzip(path)
    return parse_idx(content, path, ndim)


def _preview(data: bytes) -> str:
    return repr(data[:16])


def _html_hint(data: bytes) -> str:
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return " — it looks like an HTML/XML page, e.g. an error page saved by a failed download"
    return ""
