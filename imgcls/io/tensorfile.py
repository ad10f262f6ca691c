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

Large tensors need not pass through memory: :func:`map_tensors` gives
read-only ``numpy.memmap`` views of the data section (any offset; safetensors
data need not be 8-byte aligned), :func:`file_sha256` computes the payload
hash from the file block by block, and :func:`write_safetensors` writes a file
from arrays (memory-mapped or not) and
:class:`~imgcls.datasets.features.ShardedArray` block by block
(:func:`tensor_blocks`), so saving and loading a kNN model over a training set
larger than memory hold about :data:`BLOCK_BYTES` at a time.

Every problem raises :class:`~imgcls.errors.ModelFileError` whose one-line
message names the file and the cause.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from ..errors import ModelFileError
from .jsonbounds import Refused, bounded_loads

__all__ = ["fail", "parse_json", "read_header", "read_tensors", "map_tensors", "file_sha256",
           "stream_sha256", "tensor_blocks", "write_safetensors", "MAX_NDIM", "BLOCK_BYTES"]

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
_ST_CODES = {name: code for code, name in _ST_DTYPES.items()}
#: Bytes hashed, written or checked at a time when tensors are streamed (4 MiB):
#: large enough that per-call costs vanish, small enough to stay in cache.
BLOCK_BYTES = 1 << 22
# safetensors pads its header with spaces so that the data start on an 8-byte
# boundary (its writer's alignment; readers accept any)
_HEADER_ALIGN = 8


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


def _check_bools(path: Path, t: _Tensor, arr: np.ndarray) -> None:
    """A bool tensor may hold only the bytes 0 and 1 (checked in blocks)."""
    if t.dtype.kind != "b" or not arr.size:
        return
    flat = arr.reshape(-1).view(np.uint8)
    for s in range(0, flat.size, BLOCK_BYTES):
        if int(flat[s:s + BLOCK_BYTES].max()) > 1:
            raise fail(path, f"tensor {t.name!r}: a bool tensor holds bytes other than 0 "
                             "and 1")


def map_tensors(path: Path, f: BinaryIO, entries: list[_Tensor],
                data_start: int) -> dict[str, np.ndarray]:
    """Each tensor as a read-only ``numpy.memmap`` of its bytes in the open file ``f``.

    Only for tensors of at least one axis and one value, on a little-endian
    machine (the file's byte order); :func:`read_header` has checked that
    every tensor lies inside the file.  The maps stay valid after ``f`` is
    closed, and after the file is replaced (imgcls replaces files by rename);
    a file truncated in place by another program cannot be guarded against.
    """
    tensors: dict[str, np.ndarray] = {}
    for t in entries:
        if not t.shape or math.prod(t.shape) == 0 or not np.little_endian:
            raise ValueError(f"tensor {t.name!r}: only non-empty tensors of at least one "
                             "axis are memory-mapped, on little-endian machines")
        try:
            arr = np.memmap(f, dtype=t.dtype, mode="r", offset=data_start + t.start,
                            shape=t.shape)
        except (OSError, ValueError) as exc:
            raise fail(path, f"tensor {t.name!r}: cannot memory-map ({exc})") from None
        _check_bools(path, t, arr)
        tensors[t.name] = arr
    return tensors


def _digest_head(h, name: str, dtype_name: str, shape: tuple[int, ...], nbytes: int) -> None:
    # the framing of imgcls.io.codec.tensor_sha256, which these digests must equal;
    # it frames a 0-d tensor with shape (1,) (np.ascontiguousarray makes it 1-d)
    shape = shape or (1,)
    h.update(f"{name}\0{dtype_name}\0{','.join(map(str, shape))}\0".encode("utf-8"))
    h.update(int(nbytes).to_bytes(8, "little"))


def file_sha256(path: Path, f: BinaryIO, entries: list[_Tensor], data_start: int) -> str:
    """:func:`imgcls.io.codec.tensor_sha256` of the file's tensors, read in blocks.

    The file stores each tensor as C-order little-endian bytes, exactly what
    that digest hashes, so the bytes are hashed as read, :data:`BLOCK_BYTES`
    at a time, never the whole payload at once.
    """
    h = hashlib.sha256()
    buf = bytearray(min(BLOCK_BYTES, max((t.end - t.start for t in entries), default=0)))
    view = memoryview(buf)
    for t in sorted(entries, key=lambda t: t.name):
        _digest_head(h, t.name, t.dtype.name, t.shape, t.end - t.start)
        f.seek(data_start + t.start)
        left = t.end - t.start
        while left:
            got = f.readinto(view[:min(left, len(buf))])
            if not got:
                raise fail(path, f"truncated while reading tensor {t.name!r}")
            h.update(view[:got])
            left -= got
    return h.hexdigest()


def tensor_blocks(value: Any, block_bytes: int = BLOCK_BYTES) -> Iterator[memoryview]:
    """The C-order little-endian bytes of an array, in blocks of whole rows.

    Parameters
    ----------
    value : ndarray (any layout and byte order, memory-mapped or not) or an
        object with ``iter_blocks(max_rows)`` yielding ``(start, rows)``
        (:class:`~imgcls.datasets.features.ShardedArray`)
    block_bytes : int
        About how many bytes each block holds (at least one row).

    Yields
    ------
    memoryview
        Consecutive pieces whose concatenation is ``value``'s raw bytes; a
        C-contiguous little-endian array is never copied.
    """
    shape = tuple(value.shape)
    if not shape:
        yield memoryview(np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
                         .reshape(-1).view(np.uint8))
        return
    row_bytes = max(1, math.prod(shape[1:]) * value.dtype.itemsize)
    rows = max(1, block_bytes // row_bytes)
    if isinstance(value, np.ndarray):
        pieces = (value[s:s + rows] for s in range(0, shape[0], rows))
    else:
        pieces = (block for _, block in value.iter_blocks(rows))
    little = value.dtype.newbyteorder("<")
    for block in pieces:
        block = np.ascontiguousarray(block, dtype=little)  # a view when it already is
        if block.size:
            yield memoryview(block.reshape(-1).view(np.uint8))


def _nbytes(value: Any) -> int:
    return math.prod(value.shape) * value.dtype.itemsize


def stream_sha256(tensors: Mapping[str, Any]) -> str:
    """:func:`imgcls.io.codec.tensor_sha256`, block by block (:func:`tensor_blocks`)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        _digest_head(h, name, t.dtype.name, tuple(t.shape), _nbytes(t))
        for block in tensor_blocks(t):
            h.update(block)
    return h.hexdigest()


def write_safetensors(f: BinaryIO, tensors: Mapping[str, Any],
                      metadata: Mapping[str, str]) -> None:
    """Write a safetensors file to ``f``: the header, then each tensor in blocks.

    Tensors are packed in name order; the header is padded with spaces to a
    multiple of 8 bytes, as safetensors' own writer does, so files read back
    with :func:`read_header` and with the ``safetensors`` package alike.

    Parameters
    ----------
    f : binary file open for writing
    tensors : mapping of str -> ndarray or ShardedArray
        dtypes safetensors stores (bool, integers, float16/32/64).
    metadata : mapping of str -> str
        The ``"__metadata__"`` entry.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        nbytes = _nbytes(t)
        header[name] = {"dtype": _ST_CODES[np.dtype(t.dtype).name], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % _HEADER_ALIGN)
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for name in sorted(tensors):
        for block in tensor_blocks(tensors[name]):
            f.write(block)
