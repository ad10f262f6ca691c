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
from typing import Any, Mapping

import numpy as np

__all__ = ["encode", "decode", "EncodeError", "DecodeError", "tensor_sha256",
           "TENSOR_DTYPES", "is_tensor"]

#: numpy dtypes safetensors stores as tensors.
TENSOR_DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32",
                           "uint64", "int64", "float16", "float32", "float64"})

# dtypes allowed inside "$scalar"/"$array" (string kinds are checked separately)
_SCALAR_DTYPES = TENSOR_DTYPES
# largest string item allowed in a file (a crafted "<U999999999" must not allocate GBs)
_MAX_ITEMSIZE = 1 << 20


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
    """Tagged JSON for ``value``; raises EncodeError naming ``where`` for other types."""
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
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            # the common case stays plain, readable JSON
            return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"$dict": [[encode(k, f"{where} key {k!r}"), encode(v, f"{where}[{k!r}]")]
                          for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in "US":
            values = (value if kind == "U" else np.char.decode(value, "latin-1")).tolist()
            return {"$array": [value.dtype.str, list(value.shape), values]}
        if kind == "O":
            return {"$array": ["object", list(value.shape),
                               encode(value.tolist(), where)]}
        if value.dtype.name in TENSOR_DTYPES:
            # a numeric array nested in a list or dict (top-level ones become tensors)
            return {"$array": [value.dtype.name, list(value.shape),
                               encode(value.tolist(), where)]}
        raise EncodeError(f"{where}: an array of dtype {value.dtype} cannot be stored")
    raise EncodeError(f"{where}: a {type(value).__module__}.{type(value).__qualname__} "
                      f"is not a JSON value or numpy array and cannot be stored")


def decode(value: Any, where: str) -> Any:
    """Inverse of :func:`encode`; raises DecodeError on anything it did not produce."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: unexpected JSON {type(value).__name__} {str(value)[:60]}")
    if not any(isinstance(k, str) and k.startswith("$") for k in value):
        return {k: decode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if len(value) != 1:
        raise DecodeError(f"{where}: a tagged value must have exactly one key, got "
                          f"{sorted(value)[:5]}")
    (tag, body), = value.items()
    try:
        if tag == "$tuple" and isinstance(body, list):
            return tuple(decode(v, f"{where}[{i}]") for i, v in enumerate(body))
        if tag == "$dict" and isinstance(body, list):
            out = {}
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise DecodeError(f"{where}: a $dict entry is not a [key, value] pair")
                key = decode(pair[0], f"{where} key")
                if isinstance(key, list):
                    raise DecodeError(f"{where}: a list cannot be a dict key")
                out[key] = decode(pair[1], f"{where}[{key!r}]")
            return out
        if tag == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$scalar" and isinstance(body, list) and len(body) == 2 \
                and body[0] in _SCALAR_DTYPES:
            return np.dtype(body[0]).type(decode(body[1], where))
        if tag == "$array" and isinstance(body, list) and len(body) == 3:
            return _decode_array(body, where)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"{where}: bad {tag} value ({exc})") from None
    raise DecodeError(f"{where}: unknown or malformed tag {tag!r}")


def _decode_array(body: list, where: str) -> np.ndarray:
    dtype_str, shape, values = body
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise DecodeError(f"{where}: bad array shape {shape!r}")
    if dtype_str == "object":
        # fill element by element so nested lists stay Python objects, not new axes
        arr = np.empty(tuple(shape), dtype=object)
        elements = decode(values, where)
        if arr.ndim == 0:
            arr[()] = elements
        else:
            _fill(arr, elements, where)
        return arr
    if not isinstance(dtype_str, str):
        raise DecodeError(f"{where}: bad array dtype {dtype_str!r}")
    dtype = np.dtype(dtype_str)
    if dtype_str in TENSOR_DTYPES:
        arr = np.array(decode(values, where), dtype=dtype)
    elif dtype.kind not in "US" or dtype.itemsize > _MAX_ITEMSIZE:
        raise DecodeError(f"{where}: $array holds numbers, strings or objects, not {dtype_str!r}")
    elif dtype.kind == "S":
        arr = np.char.encode(np.array(values, dtype=str).reshape(shape), "latin-1").astype(dtype)
    else:
        arr = np.array(values, dtype=dtype)
    if list(arr.shape) != shape:
        if arr.size == 0 and int(np.prod(shape)) == 0:
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
