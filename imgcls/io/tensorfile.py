"""The safetensors layout of a model file, read with every size checked first.

A safetensors file is 8 bytes of header length n (little-endian), n bytes of
JSON header (per tensor its dtype, shape and byte offsets, plus
"__metadata__" mapping str -> str), then the tensors packed one after the
other.  :func:`read_header` checks the header length, parses the JSON with
:func:`~imgcls.io.jsonbounds.bounded_loads`, checks every tensor entry and
that the tensors fill the data section exactly, so no declared shape can ask
for more bytes than the file holds; :func:`read_tensors` then reads each
tensor straight into its own array.  The imgcls document inside
"__metadata__" is :mod:`imgcls.io.modelfile`'s business.

Every problem raises :class:`~imgcls.errors.ModelFileError` whose one-line
message names the file and the cause.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import ModelFileError
from .jsonbounds import Refused, bounded_loads

__all__ = ["fail", "parse_json", "read_header", "read_tensors", "MAX_NDIM"]

# safetensors refuses headers above 100 MB; so do we, before reading one.
_MAX_HEADER = 100 * 1024 * 1024
# the shortest header is "{}"
_MIN_HEADER = 2
# JSON nesting allowed: the safetensors header is {name: {"shape": [...]}}, 3
# levels, far below Python's recursion limit (1000).
_HEADER_MAX_DEPTH = 8
# numpy 1.x arrays have at most 32 axes
MAX_NDIM = 32
# safetensors dtype code -> numpy dtype name (little-endian in the file)
_ST_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
              "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64",
              "F16": "float16", "F32": "float32", "F64": "float64"}


def fail(path: Path, message: str) -> ModelFileError:
    """The error for a bad model file: one line, ``"<path>: <message>"``."""
    return ModelFileError(f"{path}: {message}")


def parse_json(path: Path, text: str, what: str, max_depth: int) -> Any:
    """:func:`bounded_loads`, every failure a ModelFileError naming ``path``."""
    try:
        return bounded_loads(text, max_depth)
    except Refused as exc:
        raise fail(path, f"{what}: {exc}") from None
    except ValueError:  # JSONDecodeError and int()'s own limits
        raise fail(path, f"{what} (not valid JSON); the file is damaged or not a model "
                         "file") from None


class _Tensor:
    """One tensor entry of the header, checked: numpy dtype, shape, offsets."""

    __slots__ = ("name", "dtype", "shape", "start", "end")

    def __init__(self, name: str, dtype: np.dtype, shape: tuple[int, ...], start: int, end: int):
        self.name, self.dtype, self.shape, self.start, self.end = name, dtype, shape, start, end


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tensor_entry(path: Path, name: str, entry: Any) -> _Tensor:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise fail(path, f"corrupt header entry for tensor {name[:80]!r} (expected exactly "
                         "dtype, shape and data_offsets)")
    dtype_name = _ST_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype_name is None:
        raise fail(path, f"tensor {name[:80]!r}: unsupported dtype "
                         f"{str(entry['dtype'])[:20]!r} (imgcls stores "
                         f"{', '.join(_ST_DTYPES)})")
    shape = entry["shape"]
    if not (isinstance(shape, list) and len(shape) <= MAX_NDIM
            and all(_is_count(s) for s in shape)):
        raise fail(path, f"tensor {name[:80]!r}: bad shape {str(shape)[:80]}")
    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise fail(path, f"tensor {name[:80]!r}: bad data_offsets {str(offsets)[:80]}")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if nbytes != offsets[1] - offsets[0]:
        raise fail(path, f"tensor {name[:80]!r}: shape {shape} of {dtype_name} needs {nbytes} "
                         f"bytes, but its offsets span {offsets[1] - offsets[0]}")
    return _Tensor(name, dtype, tuple(shape), offsets[0], offsets[1])


def read_header(path: Path, f: BinaryIO) -> tuple[dict[str, Any], list[_Tensor], int]:
    """The safetensors header of the open file ``f``: (header, tensors by offset, data start).

    Every tensor entry is checked and the tensors must be packed exactly
    from the start of the data section to the end of the file, so that no
    declared shape can ask for more bytes than the file holds.
    """
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise fail(path, f"truncated, empty or not a model file: {size} bytes is too short "
                         "for a model file")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER:
        raise fail(path, "not an imgcls model file (no safetensors header; is it a model "
                         "saved with imgcls.save?)")
    if n < _MIN_HEADER:
        raise fail(path, f"not an imgcls model file (header length {n}; a safetensors "
                         f"header is a JSON object of {_MIN_HEADER} to {_MAX_HEADER} bytes)")
    first = f.read(1)
    if first and first != b"{":
        raise fail(path, "not an imgcls model file (no safetensors header; is it a model "
                         "saved with imgcls.save?)")
    if 8 + n > size:
        raise fail(path, f"truncated: the header needs {8 + n} bytes but the file has {size}")
    raw = first + f.read(n - 1)
    if len(raw) != n:
        raise fail(path, "truncated while reading the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(path, "corrupt header (not valid JSON: not UTF-8); the file is damaged "
                         "or not a model file") from None
    header = parse_json(path, text, "corrupt header", _HEADER_MAX_DEPTH)
    if not isinstance(header, dict):
        raise fail(path, "corrupt header (not a JSON object)")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise fail(path, "corrupt header: __metadata__ must map names to strings")
    tensors = sorted((_check_tensor_entry(path, name, entry)
                      for name, entry in header.items() if name != "__metadata__"),
                     key=lambda t: (t.start, t.end))
    data_size = size - 8 - n
    end = 0
    for t in tensors:
        if t.start != end:
            if t.start > data_size:
                break  # reported as truncation below
            raise fail(path, f"corrupt header: tensor {t.name[:80]!r} starts at byte "
                             f"{t.start} of the data, expected {end} (tensors are packed "
                             "one after the other)")
        end = t.end
    end = max([end, *(t.end for t in tensors)])
    if end > data_size:
        raise fail(path, f"truncated: {size} bytes, but the header describes "
                         f"{8 + n + end} bytes")
    if end < data_size:
        raise fail(path, f"{data_size - end} bytes after the tensor data; the file is "
                         "damaged or not a model file")
    return header, tensors, 8 + n


def read_tensors(path: Path, f: BinaryIO, entries: list[_Tensor],
                 data_start: int) -> dict[str, np.ndarray]:
    """Each tensor read straight into its own array: one copy, no larger than the file."""
    tensors: dict[str, np.ndarray] = {}
    for t in entries:
        arr = np.empty(t.shape, dtype=t.dtype)
        buf = memoryview(arr.reshape(-1).view(np.uint8))
        f.seek(data_start + t.start)
        done = 0
        while done < len(buf):
            got = f.readinto(buf[done:])
            if not got:
                raise fail(path, f"truncated while reading tensor {t.name!r}")
            done += got
        if t.dtype.kind == "b" and arr.size and int(arr.reshape(-1).view(np.uint8).max()) > 1:
            raise fail(path, f"tensor {t.name!r}: a bool tensor holds bytes other than 0 "
                             "and 1")
        if not np.little_endian and t.dtype.itemsize > 1:
            arr = arr.astype(t.dtype.newbyteorder("="))
        tensors[t.name] = arr
    return tensors
