"""Faithful JSON for learned attributes and parameters, and the payload hash.

JSON alone loses types that matter to an estimator: a tuple comes back as a
list, a dict with int keys gets string keys, ``nan`` is not JSON, and a numpy
scalar or a string array has no JSON form.  Values are therefore written as a
small *tagged* JSON: plain ``None``/bool/int/float/str, lists and dicts with
string keys stay as they are, and everything else becomes a one-key object
whose key starts with ``$``:

- ``{"$tuple": [...]}``: a tuple;
- ``{"$dict": [[k, v], ...]}``: a dict with a non-string key or a key starting with "$";
- ``{"$float": "nan" | "inf" | "-inf"}``: a non-finite float;
- ``{"$scalar": [dtype, value]}``: a numpy scalar (e.g. ``np.int64(3)``);
- ``{"$array": [dtype, shape, values]}``: an array inside a list or dict, or a
  string or object array (values as a nested list).

Any other object with a ``$`` key is rejected when decoding, so a crafted file
cannot smuggle in a type.  Nothing here imports or calls anything named in a
file (no pickle, no eval).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

__all__ = ["encode", "decode", "EncodeError", "DecodeError", "tensor_sha256",
           "TENSOR_DTYPES", "MAX_DEPTH", "is_tensor"]

#: numpy dtypes safetensors stores as tensors.
TENSOR_DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32",
                           "uint64", "int64", "float16", "float32", "float64"})

# dtypes allowed inside "$scalar"/"$array" (string kinds are checked separately)
_SCALAR_DTYPES = TENSOR_DTYPES
# largest string item allowed in a file (a crafted "<U999999999" must not allocate GBs)
_MAX_ITEMSIZE = 1 << 20
# fixed-width string dtypes as numpy writes them in dtype.str ("<U3", "|S8")
_STRING_DTYPE = re.compile(r"[<>|=]?[US][0-9]{1,9}")
# a string array may always take 1 MiB; beyond that at most 8 bytes per character
# (plus one per element) present in the file.  8 covers numpy's own UCS-4 layout
# (4 bytes per character) of strings of equal length with room for padding.
_STRING_FLOOR = 1 << 20
_STRING_INFLATION = 8
# numpy 1.x allows 32 dimensions (numpy 2: 64); no estimator needs more
_MAX_NDIM = 32

# longest dict key shown in an error location (see _label)
_MAX_LABEL = 40

#: Deepest nesting :func:`decode` accepts (each list, dict or tag is one level).
#: imgcls's own values nest a few levels; Python's recursion limit is 1000.
MAX_DEPTH = 100


class EncodeError(ValueError):
    """A value has no faithful JSON form (the message names where it is)."""


class DecodeError(ValueError):
    """Tagged JSON that does not decode (the message names where it is)."""


def is_tensor(value: Any) -> bool:
    """True for numpy arrays that go into the safetensors payload (numbers and bools)."""
    return isinstance(value, np.ndarray) and value.dtype.name in TENSOR_DTYPES


def _plain_float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def encode(value: Any, where: str) -> Any:
    """Tagged JSON for ``value``; raises EncodeError naming ``where`` for other types.

    Values nested deeper than :data:`MAX_DEPTH` (or containing themselves) are
    refused too: :func:`decode` would not read them back.
    """
    return _encode(value, where, 0)


def _encode(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise EncodeError(f"{where}: nested deeper than {MAX_DEPTH} levels (or contains "
                          "itself)")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, np.generic):
        return int(value)
    if isinstance(value, float) and not isinstance(value, np.generic):
        return _plain_float(float(value))
    if isinstance(value, np.generic):
        dtype = value.dtype
        if dtype.name not in _SCALAR_DTYPES:
            raise EncodeError(f"{where}: a numpy {dtype} scalar cannot be stored")
        item = value.item()
        return {"$scalar": [dtype.name, _plain_float(item) if isinstance(item, float) else item]}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            # the common case stays plain, readable JSON
            return {k: _encode(v, f"{where}[{_label(k)}]", depth + 1) for k, v in value.items()}
        return {"$dict": [[_encode(k, f"{where} key {_label(k)}", depth + 1),
                           _encode(v, f"{where}[{_label(k)}]", depth + 1)]
                          for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in "US":
            values = (value if kind == "U" else np.char.decode(value, "latin-1")).tolist()
            return {"$array": [value.dtype.str, list(value.shape), values]}
        if kind == "O":
            return {"$array": ["object", list(value.shape),
                               _encode(value.tolist(), where, depth + 1)]}
        if value.dtype.name in TENSOR_DTYPES:
            # a numeric array nested in a list or dict (top-level ones become tensors)
            return {"$array": [value.dtype.name, list(value.shape),
                               _encode(value.tolist(), where, depth + 1)]}
        raise EncodeError(f"{where}: an array of dtype {value.dtype} cannot be stored")
    raise EncodeError(f"{where}: a {type(value).__module__}.{type(value).__qualname__} "
                      f"is not a JSON value or numpy array and cannot be stored")


def decode(value: Any, where: str) -> Any:
    """Inverse of :func:`encode`; raises DecodeError on anything it did not produce.

    Bounded for values from strangers: nesting deeper than :data:`MAX_DEPTH`
    is refused before Python's recursion limit is reached, and a ``$array``'s
    stated shape is checked against the values actually present before any
    array is allocated (see :func:`_decode_array`).
    """
    return _decode(value, where, 0)


def _label(key: Any) -> str:
    """A key as it appears in an error location, shortened.

    Every level's location holds its parent's, so long keys at every level
    would cost quadratic memory; a label is at most _MAX_LABEL characters.
    """
    text = repr(key)
    return text if len(text) <= _MAX_LABEL else text[:_MAX_LABEL - 3] + "..."


def _decode(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DecodeError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: unexpected JSON {type(value).__name__} {str(value)[:60]}")
    if not any(isinstance(k, str) and k.startswith("$") for k in value):
        return {k: _decode(v, f"{where}[{_label(k)}]", depth + 1) for k, v in value.items()}
    if len(value) != 1:
        raise DecodeError(f"{where}: a tagged value must have exactly one key, got "
                          f"{sorted(value)[:5]}")
    (tag, body), = value.items()
    try:
        if tag == "$tuple" and isinstance(body, list):
            return tuple(_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(body))
        if tag == "$dict" and isinstance(body, list):
            out = {}
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise DecodeError(f"{where}: a $dict entry is not a [key, value] pair")
                key = _decode(pair[0], f"{where} key", depth + 1)
                if isinstance(key, list):
                    raise DecodeError(f"{where}: a list cannot be a dict key")
                out[key] = _decode(pair[1], f"{where}[{_label(key)}]", depth + 1)
            return out
        if tag == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$scalar" and isinstance(body, list) and len(body) == 2 \
                and body[0] in _SCALAR_DTYPES:
            number = _decode(body[1], where, depth + 1)
            if not isinstance(number, (bool, int, float)):
                raise DecodeError(f"{where}: bad $scalar value (not a number: "
                                  f"{type(number).__name__})")
            _check_integer_range((number,), np.dtype(body[0]), where, tag)
            return np.dtype(body[0]).type(number)
        if tag == "$array" and isinstance(body, list) and len(body) == 3:
            return _decode_array(body, where, depth)
    except (TypeError, ValueError, OverflowError, MemoryError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"{where}: bad {tag} value ({exc})") from None
    raise DecodeError(f"{where}: unknown or malformed tag {tag!r}")


def _count_leaves(values: Any, shape: list[int], where: str, scalar_leaves: bool) -> int:
    """Check that nested lists hold exactly ``shape``; the number of leaves.

    Walks the values the file actually contains, so a stated shape can never
    make the decoder allocate more elements than are present.  With
    ``scalar_leaves`` (numbers and strings) a leaf may not itself be a list;
    object arrays may hold lists as elements.
    """
    if not shape:
        if scalar_leaves and isinstance(values, list):
            raise DecodeError(f"{where}: array values do not have the stated shape "
                              "(a list where a single element belongs)")
        return 1
    if not isinstance(values, list) or len(values) != shape[0]:
        raise DecodeError(f"{where}: array values do not have the stated shape {shape}")
    return sum(_count_leaves(v, shape[1:], where, scalar_leaves) for v in values)


def _leaves(values: Any, ndim: int) -> Iterator[Any]:
    if ndim == 0:
        yield values
        return
    for v in values:
        yield from _leaves(v, ndim - 1)


def _check_integer_range(numbers: Iterable[Any], dtype: np.dtype, where: str, tag: str) -> None:
    """Refuse a Python integer that does not fit the integer ``dtype``.

    numpy 2 raises ``OverflowError`` for such a value itself, but numpy 1.24-1.26
    (allowed by pyproject.toml) wrap it around with only a ``DeprecationWarning``:
    an int8 of 1000 would load as -24.  So the range is checked here, for every
    numpy.
    """
    if dtype.kind not in "iu":
        return
    info = np.iinfo(dtype)
    for v in numbers:
        if isinstance(v, int) and not info.min <= v <= info.max:
            raise DecodeError(f"{where}: bad {tag} value (an integer outside {dtype.name}'s "
                              f"range {info.min}..{info.max})")


def _decode_array(body: list, where: str, depth: int) -> np.ndarray:
    """A ``$array``, allocated only after its values have been counted.

    The stated shape must describe the nested lists exactly (checked without
    allocating).  For strings, numpy's fixed item size could still multiply
    a few characters into gigabytes, so the item size must fit the longest
    value, and the whole array may take at most
    ``max(_STRING_FLOOR, _STRING_INFLATION * (characters + elements))`` bytes.
    """
    dtype_str, shape, values = body
    if not (isinstance(shape, list)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise DecodeError(f"{where}: bad array shape {str(shape)[:80]}")
    if len(shape) > _MAX_NDIM:
        raise DecodeError(f"{where}: $array with {len(shape)} dimensions; at most {_MAX_NDIM} "
                          "are allowed")
    if not isinstance(dtype_str, str):
        raise DecodeError(f"{where}: bad array dtype {str(dtype_str)[:40]!r}")
    if dtype_str == "object":
        # fill element by element so nested lists stay Python objects, not new axes
        _count_leaves(values, shape, where, scalar_leaves=False)
        elements = _decode(values, where, depth + 1)
        arr = np.empty(tuple(shape), dtype=object)
        if arr.ndim == 0:
            arr[()] = elements
        else:
            _fill(arr, elements, where)
        return arr
    if dtype_str in TENSOR_DTYPES:
        _count_leaves(values, shape, where, scalar_leaves=True)
        decoded = _decode(values, where, depth + 1)
        _check_integer_range(_leaves(decoded, len(shape)), np.dtype(dtype_str), where, "$array")
        arr = np.array(decoded, dtype=np.dtype(dtype_str))
    elif _STRING_DTYPE.fullmatch(dtype_str):
        dtype = np.dtype(dtype_str)
        if dtype.itemsize > _MAX_ITEMSIZE:
            raise DecodeError(f"{where}: $array holds numbers, strings or objects, not "
                              f"{dtype_str!r} (items of {dtype.itemsize} bytes; at most "
                              f"{_MAX_ITEMSIZE})")
        n = _count_leaves(values, shape, where, scalar_leaves=True)
        leaves = list(_leaves(values, len(shape)))
        if not all(isinstance(s, str) for s in leaves):
            raise DecodeError(f"{where}: a string array holds a value that is not a string")
        longest = max((len(s) for s in leaves), default=0)
        char_size = 4 if dtype.kind == "U" else 1
        if dtype.itemsize < longest * char_size:
            raise DecodeError(f"{where}: $array dtype {dtype_str} is shorter than its longest "
                              f"value ({longest} characters)")
        budget = max(_STRING_FLOOR, _STRING_INFLATION * (sum(map(len, leaves)) + n))
        if n * dtype.itemsize > budget:
            raise DecodeError(f"{where}: $array dtype {dtype_str} is larger than its values "
                              f"need ({n} x {dtype.itemsize} bytes for "
                              f"{sum(map(len, leaves))} characters)")
        if dtype.kind == "S":
            arr = np.char.encode(np.array(values, dtype=str).reshape(shape),
                                 "latin-1").astype(dtype)
        else:
            arr = np.array(values, dtype=dtype)
    else:
        raise DecodeError(f"{where}: $array holds numbers, strings or objects, "
                          f"not {dtype_str[:40]!r}")
    if list(arr.shape) != shape:
        if arr.size == 0 and math.prod(shape) == 0:
            return arr.reshape(shape)
        raise DecodeError(f"{where}: array values do not have the stated shape {shape}")
    return arr


def _fill(arr: np.ndarray, values: Any, where: str) -> None:
    if arr.ndim == 1:
        if not isinstance(values, list) or len(values) != arr.shape[0]:
            raise DecodeError(f"{where}: object array values do not match the stated shape")
        for i, v in enumerate(values):
            arr[i] = v
        return
    if not isinstance(values, list) or len(values) != arr.shape[0]:
        raise DecodeError(f"{where}: object array values do not match the stated shape")
    for i, v in enumerate(values):
        _fill(arr[i], v, where)


def tensor_sha256(tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the tensors in a canonical order, independent of the file layout.

    For each tensor, by name: the name, dtype and shape as text, the byte count
    as 8 little-endian bytes, then the raw C-order little-endian bytes.  The
    separators and the length prefix make the encoding unambiguous.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not np.little_endian):
            a = a.astype(a.dtype.newbyteorder("<"))
        data = a.reshape(-1).view(np.uint8)  # the raw bytes, without a copy
        head = f"{name}\0{a.dtype.name}\0{','.join(map(str, a.shape))}\0"
        h.update(head.encode("utf-8"))
        h.update(int(data.size).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
