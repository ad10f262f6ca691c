"""Model files: a safetensors payload plus one JSON metadata document, no pickle.

Layout of a model file (one ``.safetensors`` file)::

    8 bytes        header length n (little-endian), 2 <= n <= 100 MB
    n bytes        the safetensors header (JSON): per tensor its dtype, shape and
                   byte offsets, plus "__metadata__" (str -> str):
        imgcls             the JSON document below
        imgcls_signature   "hmac-sha256:<64 hex digits>", only in signed files
    data           the tensors, packed one after the other: every learned
                   attribute that is a numeric/bool numpy array, under its
                   attribute name (e.g. "W_", "b_", "X_fit_", "classes_")

The metadata document holds::

    format, format_version        "imgcls-model", 1
    imgcls_version                the version that wrote the file
    estimator                     short class name from the allow-list
    params                        get_params(deep=False), tagged JSON
    classes                       {"dtype": ..., "values": [...]} of classes_
    class_names                   human-readable names, or null
    input                         {"image_shape": [H, W, C] | null, "n_features": d}
    preprocessing                 a JSON description
    attributes                    name -> {"tensor": {"dtype", "shape"}} or {"json": value}
    payload_sha256                tensor_sha256 of the tensors
    metadata_sha256               SHA-256 of this document without this field

What the checks protect against
-------------------------------
* **Accidents** (truncation, a bad download, flipped bits): the two SHA-256s.
  Every truncation and every changed byte of the model's content is caught.
  They do NOT protect against someone who edits the file on purpose: anyone
  can recompute them.
* **Deliberate edits**: the optional signature.  ``save(..., key=K)`` stores
  ``HMAC-SHA256(K, "imgcls-model-signature-v1\\n" + metadata_sha256 + "\\n" +
  payload_sha256)`` (the hashes as hex text, both checked by the reader; ``K`` is
  the key's bytes, a str encoded as UTF-8, at least :data:`MIN_KEY_BYTES`).
  ``load(..., key=K)`` refuses an unsigned file or one whose signature does
  not match, before reading any tensor, so only holders of ``K`` can make a
  file that passes.  A signature tells who made a file, not which file is the
  latest: an older file signed with the same key still passes.  ``load``
  without a key loads signed and unsigned files alike and checks integrity
  only.
* **Hostile files** (anyone's, signed or not): the reader itself is bounded.
  Only regular files are opened (a FIFO cannot make it wait); the header
  length, JSON nesting depth, numbers (no NaN/Infinity, at most
  ``_MAX_INT_DIGITS`` digits) and every declared shape are checked against the
  bytes actually present before anything is allocated; the estimator class
  comes from an allow-list, its parameters pass the estimator's
  ``_parameter_constraints``, and its learned attributes pass its declared
  schema (:func:`imgcls._validation.validate_learned_attributes`).  No code
  from the file is ever run.  None of this makes a stranger's model *good*: a
  valid file may still hold weights chosen to mislead.  Use a key to know who
  made it.

Every problem with a file raises :class:`~imgcls.errors.ModelFileError`
whose one-line message names the file and the cause.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np

from .._files import open_regular
from .._validation import validate_learned_attributes
from .._version import __version__
from ..errors import ModelFileError
from .atomic import write_bytes_atomic
from .codec import DecodeError, EncodeError, decode, encode, is_tensor, tensor_sha256
from .registry import BUILTIN_ESTIMATORS, allowed_names, resolve_estimator

__all__ = ["save", "load", "read_metadata", "FORMAT_NAME", "FORMAT_VERSION", "MIN_KEY_BYTES"]

FORMAT_NAME = "imgcls-model"
#: The newest format this imgcls writes and reads.  Bump on incompatible changes.
FORMAT_VERSION = 1
_META_KEY = "imgcls"
_SIGNATURE_KEY = "imgcls_signature"
_SIGNATURE_PREFIX = "hmac-sha256:"
# Domain separation: a MAC made for another purpose with the same key cannot
# pass as a model signature.  "v1" names this message layout.
_SIGNATURE_CONTEXT = b"imgcls-model-signature-v1\n"
#: Shortest key accepted for signing: 16 bytes = 128 bits.  HMAC-SHA256 is no
#: stronger than its key; below 128 bits, guessing the key offline from one
#: signed file starts to be within reach (NIST SP 800-107 asks for keys of at
#: least the security strength wanted).  A passphrase has far fewer bits than
#: its length suggests: prefer random bytes, e.g. ``secrets.token_bytes(32)``.
MIN_KEY_BYTES = 16
# safetensors refuses headers above 100 MB; so do we, before reading one.
_MAX_HEADER = 100 * 1024 * 1024
# the shortest header is "{}"
_MIN_HEADER = 2
# JSON nesting allowed: the safetensors header is {name: {"shape": [...]}}, 3
# levels; the metadata document nests values a few levels below "attributes".
# Both stay far below Python's recursion limit (1000) for json and the codec.
_HEADER_MAX_DEPTH = 8
_DOC_MAX_DEPTH = 128
# digits of a JSON integer: int64/uint64 need 20; Python's int() parses in
# quadratic time and refuses more than 4300 digits by default
_MAX_INT_DIGITS = 100
# numpy 1.x arrays have at most 32 axes
_MAX_NDIM = 32
# safetensors dtype code -> numpy dtype name (little-endian in the file)
_ST_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
              "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64",
              "F16": "float16", "F32": "float32", "F64": "float64"}
# learned attributes describing the input transformation, listed in "preprocessing"
_PREPROCESSING_ATTRS = ("mean_", "scale_", "std_", "center_", "min_", "max_")


def _mac_key(key: bytes | str | None) -> bytes | None:
    """The HMAC key: ``key`` itself, a str encoded as UTF-8; None without a key.

    RFC 2104: HMAC hashes a key longer than SHA-256's 64-byte block first, so
    any length from :data:`MIN_KEY_BYTES` up works.
    """
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
    else:
        raise ValueError(f"key: expected bytes or str, got {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key: must be at least {MIN_KEY_BYTES} bytes (128 bits), got "
                         f"{len(key)}; use random bytes, e.g. secrets.token_bytes(32)")
    return key


def _signature(mac_key: bytes, metadata_sha256: str, payload_sha256: str) -> str:
    message = (_SIGNATURE_CONTEXT + metadata_sha256.encode("ascii") + b"\n"
               + payload_sha256.encode("ascii"))
    return hmac.new(mac_key, message, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- save

def _learned_attributes(model: Any) -> dict[str, Any]:
    """Public learned attributes: names ending in "_", not starting with "_"."""
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def _check_fitted(model: Any, path: Path) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise NotFittedError(f"cannot save {str(path)!r}: this {type(model).__name__} is not "
                             f"fitted yet; call fit first") from None
    except TypeError as exc:  # not an estimator at all
        raise ValueError(f"model: {exc}") from None


def _metadata_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of ``doc`` less its own hash."""
    body = {k: v for k, v in doc.items() if k != "metadata_sha256"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                       allow_nan=False)
    return hashlib.sha256(canon.encode("ascii")).hexdigest()


def _describe_input(attrs: Mapping[str, Any]) -> dict[str, Any]:
    shape = attrs.get("image_shape_")
    n_feat = attrs.get("n_features_in_")
    return {"image_shape": [int(s) for s in shape] if isinstance(shape, (tuple, list)) else None,
            "n_features": int(n_feat) if isinstance(n_feat, (int, np.integer)) else None}


def _describe_preprocessing(model: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
    shape = attrs.get("image_shape_")
    return {
        "input": ("images (n, " + ", ".join(map(str, shape)) + ") flattened in C order"
                  if isinstance(shape, (tuple, list)) else "feature vectors (n, d)"),
        "learned": [a for a in _PREPROCESSING_ATTRS if a in attrs],
    }


def _classes_entry(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    classes = attrs.get("classes_")
    if classes is None:
        return None
    try:
        arr = np.asarray(classes)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"model: classes_ is not an array of labels ({exc})") from None
    values = arr.tolist() if arr.dtype.kind in "biufU" else [str(c) for c in arr.tolist()]
    return {"dtype": arr.dtype.str if arr.dtype.kind in "US" else arr.dtype.name,
            "values": values}


def _class_names(classes: Any, attrs: Mapping[str, Any]) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__"):
        raise ValueError(f"classes: expected a list of class names, got {type(classes).__name__}")
    names = [str(c) for c in classes]
    n = None
    if "classes_" in attrs:
        labels = np.asarray(attrs["classes_"])
        if labels.ndim == 0:
            raise ValueError("model: classes_ is a single value, not an array of labels")
        n = len(labels)
    if n is not None and len(names) != n:
        raise ValueError(f"classes: {len(names)} names given but the model has {n} classes "
                         "(classes_); give one name per entry of classes_")
    return names


def _check_loads_back(name: str, text: str, doc: Mapping[str, Any]) -> None:
    """Refuse to write metadata that :func:`load` would refuse (depth, digits, string sizes)."""
    try:
        _bounded_loads(text, _DOC_MAX_DEPTH)
        decode(doc["params"], "params")
        for attr, entry in doc["attributes"].items():
            if "json" in entry:
                decode(entry["json"], attr)
    except ValueError as exc:  # _Refused, DecodeError
        raise ValueError(f"model: cannot save {name}: {exc}; the file would not load "
                         "back") from None


def save(model: Any, path: str | os.PathLike, *, classes: Any = None,
         preprocessing: Mapping[str, Any] | None = None,
         registry: Mapping[str, type] | None = None,
         key: bytes | str | None = None) -> Path:
    """Save a fitted estimator to a single safetensors file, atomically.

    Parameters
    ----------
    model : fitted estimator
        An instance of an allowed class (``KNearestNeighbor``, ``NearestNeighbor``,
        ``LinearSVM``, ``Softmax``, or one added with
        :func:`imgcls.io.register_estimator` / ``registry``).  A kNN model stores
        its training set.
    path : str or path-like
        The file to write (``.safetensors`` by convention); its directory must
        exist.  It is replaced only when the new file is complete.
    classes : sequence of str, optional
        Human-readable names, one per entry of ``model.classes_`` (e.g. the
        data set's class names); ``load`` sets them as ``class_names_``.
    preprocessing : dict, optional
        A JSON-able description of how inputs must be prepared; by default the
        input layout and the learned preprocessing attributes are described.
    registry : dict of str -> type, optional
        Extra allowed classes for this call (tests, plug-ins).
    key : bytes or str, optional
        Sign the file with HMAC-SHA256 under this secret key (at least
        :data:`MIN_KEY_BYTES` bytes; a str is encoded as UTF-8), so that
        ``load(path, key=key)`` can tell it from a file edited by anyone
        without the key.  See the module docstring for what this protects.

    Returns
    -------
    path : Path
        ``path`` as given.  When it is a symbolic link, the file it points to
        is replaced and the link kept; an existing file keeps its permission
        bits (see :func:`imgcls.io.atomic_write`).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The model is not fitted (a ``ValueError``).
    ValueError
        The class is not on the allow-list, a parameter or learned attribute
        has no JSON/tensor form (named), or one that :func:`load` would refuse
        (nested deeper than the readers allow or containing itself, an integer
        of more than 100 digits, a string array padded far beyond its longest
        value: store ``numpy.array(a.tolist())`` instead), ``classes`` has the
        wrong length, or ``key`` is too short or not bytes/str.
    OSError
        The file cannot be written (the message names the path).
    """
    path = Path(path)
    mac_key = _mac_key(key)
    cls = type(model)
    name = cls.__name__
    try:
        allowed = resolve_estimator(name, registry)
    except ImportError:  # a built-in name, but this object is not imgcls's class
        allowed = None
    if allowed is not cls:
        raise ValueError(f"model: cannot save a {cls.__module__}.{cls.__qualname__}: only "
                         f"these estimator classes can be saved: {', '.join(allowed_names(registry))} "
                         "(see imgcls.io.register_estimator)")
    if path.is_dir():
        raise IsADirectoryError(21, f"cannot save model to {str(path)!r}: it is a directory")
    _check_fitted(model, path)

    try:
        params = encode(dict(model.get_params(deep=False)), "params")
    except EncodeError as exc:
        raise ValueError(f"model: cannot save {name}: {exc}") from None
    attrs = _learned_attributes(model)
    tensors: dict[str, np.ndarray] = {}
    table: dict[str, Any] = {}
    for attr, value in sorted(attrs.items()):
        if is_tensor(value):
            # native byte order, C order: what safetensors writes and the hash reads
            # (np.asarray keeps a 0-d array 0-d; ascontiguousarray would make it 1-d)
            arr = np.asarray(value, dtype=value.dtype.newbyteorder("="), order="C")
            tensors[attr] = arr
            table[attr] = {"tensor": {"dtype": arr.dtype.name, "shape": list(arr.shape)}}
        else:
            try:
                table[attr] = {"json": encode(value, attr)}
            except EncodeError as exc:
                raise ValueError(f"model: cannot save {name}: learned attribute {exc}") from None
    if preprocessing is not None:
        try:
            json.dumps(preprocessing, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"preprocessing: must be JSON-able ({exc})") from None
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "imgcls_version": __version__,
        "estimator": name,
        "params": params,
        "classes": _classes_entry(attrs),
        "class_names": _class_names(classes, attrs),
        "input": _describe_input(attrs),
        "preprocessing": dict(preprocessing) if preprocessing is not None
        else _describe_preprocessing(model, attrs),
        "attributes": table,
        "payload_sha256": tensor_sha256(tensors),
    }
    doc["metadata_sha256"] = _metadata_hash(doc)

    from safetensors.numpy import save as st_save

    text = json.dumps(doc, allow_nan=False)
    _check_loads_back(name, text, doc)
    metadata = {_META_KEY: text}
    if mac_key is not None:
        metadata[_SIGNATURE_KEY] = _SIGNATURE_PREFIX + _signature(
            mac_key, doc["metadata_sha256"], doc["payload_sha256"])
    data = st_save(tensors, metadata=metadata)
    return write_bytes_atomic(path, data, what="model file")


# ----------------------------------------------------------------------------- load

def _fail(path: Path, message: str) -> ModelFileError:
    return ModelFileError(f"{path}: {message}")


class _Refused(ValueError):
    """A JSON token the reader does not accept (raised from json.loads's hooks)."""


def _refuse_constant(token: str) -> Any:
    raise _Refused(f"{token} is not a number (JSON has no NaN or Infinity)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]} is not a finite number")
    return value


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > _MAX_INT_DIGITS:
        raise _Refused(f"an integer with {digits} digits (at most {_MAX_INT_DIGITS})")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Refused(f"the key {dup[:60]!r} appears twice in one object")
    return out


# Strings are removed in two linear passes: first every escape (a backslash and
# the character after it, left to right, so an escaped backslash or an escaped
# quote goes whole), then every quote-to-quote run.  A single pattern for
# strings with escapes would rescan the rest of the text from every quote of an
# unterminated string (quadratic time).
_JSON_ESCAPE = re.compile(r"\\.", re.S)
_PLAIN_STRING = re.compile(r'"[^"]*"')
# bytes scanned per numpy step when measuring nesting (bounded memory)
_DEPTH_CHUNK = 1 << 20


def _nesting_depth(text: str, limit: int) -> int:
    """The deepest bracket nesting of JSON ``text``, outside strings, without recursion.

    Returns 0 at once when there are too few brackets to exceed ``limit``
    (most files); otherwise strings are removed (in linear time) and the
    running depth is a cumulative sum of +1 per ``[``/``{`` and -1 per
    ``]``/``}``, taken in bounded chunks.  Brackets are ASCII, so they are
    single bytes in UTF-8.  Text that is not JSON may be measured deeper than
    a parser would get, never shallower: a backslash outside a string ends
    the parse where the count is still exact.
    """
    if text.count("[") + text.count("{") <= limit:
        return 0
    skeleton = _PLAIN_STRING.sub("", _JSON_ESCAPE.sub("", text))
    raw = skeleton.encode("utf-8", "replace")
    deepest = level = 0
    for start in range(0, len(raw), _DEPTH_CHUNK):
        b = np.frombuffer(raw, np.uint8, count=min(_DEPTH_CHUNK, len(raw) - start),
                          offset=start)
        steps = ((b == ord("[")).astype(np.int64) + (b == ord("{"))
                 - (b == ord("]")) - (b == ord("}")))
        running = np.cumsum(steps) + level
        deepest = max(deepest, int(running.max()))
        level = int(running[-1])
    return deepest


def _bounded_loads(text: str, max_depth: int) -> Any:
    """``json.loads`` bounded: nesting, NaN/Infinity, huge numbers and repeated keys refused.

    Raises ``_Refused`` (a ValueError) with the cause, or ``ValueError`` for
    text that is not JSON.
    """
    depth = _nesting_depth(text, max_depth)
    if depth > max_depth:
        raise _Refused(f"nested deeper than {max_depth} levels ({depth})")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float,
                          parse_int=_parse_int, object_pairs_hook=_unique_keys)
    except RecursionError:  # not reachable after the depth scan; kept as a guarantee
        raise _Refused("nested too deeply") from None


def _parse_json(path: Path, text: str, what: str, max_depth: int) -> Any:
    """:func:`_bounded_loads`, every failure a ModelFileError naming ``path``."""
    try:
        return _bounded_loads(text, max_depth)
    except _Refused as exc:
        raise _fail(path, f"{what}: {exc}") from None
    except ValueError:  # JSONDecodeError and int()'s own limits
        raise _fail(path, f"{what} (not valid JSON); the file is damaged or not a model "
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
        raise _fail(path, f"corrupt header entry for tensor {name[:80]!r} (expected exactly "
                          "dtype, shape and data_offsets)")
    dtype_name = _ST_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype_name is None:
        raise _fail(path, f"tensor {name[:80]!r}: unsupported dtype "
                          f"{str(entry['dtype'])[:20]!r} (imgcls stores "
                          f"{', '.join(_ST_DTYPES)})")
    shape = entry["shape"]
    if not (isinstance(shape, list) and len(shape) <= _MAX_NDIM
            and all(_is_count(s) for s in shape)):
        raise _fail(path, f"tensor {name[:80]!r}: bad shape {str(shape)[:80]}")
    offsets = entry["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise _fail(path, f"tensor {name[:80]!r}: bad data_offsets {str(offsets)[:80]}")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if nbytes != offsets[1] - offsets[0]:
        raise _fail(path, f"tensor {name[:80]!r}: shape {shape} of {dtype_name} needs {nbytes} "
                          f"bytes, but its offsets span {offsets[1] - offsets[0]}")
    return _Tensor(name, dtype, tuple(shape), offsets[0], offsets[1])


def _read_header(path: Path, f: BinaryIO) -> tuple[dict[str, Any], list[_Tensor], int]:
    """The safetensors header of the open file ``f``: (header, tensors by offset, data start).

    Every tensor entry is checked and the tensors must be packed exactly
    from the start of the data section to the end of the file, so that no
    declared shape can ask for more bytes than the file holds.
    """
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise _fail(path, f"truncated, empty or not a model file: {size} bytes is too short "
                          "for a model file")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER:
        raise _fail(path, "not an imgcls model file (no safetensors header; is it a model "
                          "saved with imgcls.save?)")
    if n < _MIN_HEADER:
        raise _fail(path, f"not an imgcls model file (header length {n}; a safetensors "
                          f"header is a JSON object of {_MIN_HEADER} to {_MAX_HEADER} bytes)")
    first = f.read(1)
    if first and first != b"{":
        raise _fail(path, "not an imgcls model file (no safetensors header; is it a model "
                          "saved with imgcls.save?)")
    if 8 + n > size:
        raise _fail(path, f"truncated: the header needs {8 + n} bytes but the file has {size}")
    raw = first + f.read(n - 1)
    if len(raw) != n:
        raise _fail(path, "truncated while reading the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(path, "corrupt header (not valid JSON: not UTF-8); the file is damaged "
                          "or not a model file") from None
    header = _parse_json(path, text, "corrupt header", _HEADER_MAX_DEPTH)
    if not isinstance(header, dict):
        raise _fail(path, "corrupt header (not a JSON object)")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise _fail(path, "corrupt header: __metadata__ must map names to strings")
    tensors = sorted((_check_tensor_entry(path, name, entry)
                      for name, entry in header.items() if name != "__metadata__"),
                     key=lambda t: (t.start, t.end))
    data_size = size - 8 - n
    end = 0
    for t in tensors:
        if t.start != end:
            if t.start > data_size:
                break  # reported as truncation below
            raise _fail(path, f"corrupt header: tensor {t.name[:80]!r} starts at byte "
                              f"{t.start} of the data, expected {end} (tensors are packed "
                              "one after the other)")
        end = t.end
    end = max([end, *(t.end for t in tensors)])
    if end > data_size:
        raise _fail(path, f"truncated: {size} bytes, but the header describes "
                          f"{8 + n + end} bytes")
    if end < data_size:
        raise _fail(path, f"{data_size - end} bytes after the tensor data; the file is "
                          "damaged or not a model file")
    return header, tensors, 8 + n


def _document(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    """The imgcls metadata document of a parsed header, checked (format, version, hash)."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise _fail(path, "a safetensors file without imgcls metadata; not a model saved "
                          "with imgcls.save")
    doc = _parse_json(path, meta[_META_KEY], "corrupt imgcls metadata", _DOC_MAX_DEPTH)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise _fail(path, "not an imgcls model file (unknown format name)")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, f"corrupt metadata: bad format version {str(version)[:40]!r}")
    if version > FORMAT_VERSION:
        raise _fail(path, f"written in model file format version {version} by imgcls "
                          f"{str(doc.get('imgcls_version', '?'))[:40]}; this imgcls "
                          f"{__version__} reads format version {FORMAT_VERSION} and older: "
                          "it needs a newer imgcls")
    if doc.get("metadata_sha256") != _metadata_hash(doc):
        raise _fail(path, "the metadata was modified or damaged (SHA-256 mismatch)")
    return doc


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata document of a model file, checked but not decoded.

    Checks that the file is a regular, complete safetensors file carrying
    imgcls metadata of a supported format version, with an intact metadata
    hash.  Tensors are not read (use :func:`load` for the model), and a
    signature is not checked (that needs the key: :func:`load`).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    doc : dict
        The document described in the module docstring (``params`` and
        attribute values still in tagged JSON).

    Raises
    ------
    ModelFileError
        Missing, not a regular file, truncated, foreign, damaged (SHA-256
        mismatch), malformed (nesting, numbers, tensor table) or written in a
        newer format version; the message names the file and the cause.
    """
    path = Path(path)
    with open_regular(path, error=ModelFileError, what="model file") as f:
        header, _, _ = _read_header(path, f)
    return _document(path, header)


def _verify_signature(path: Path, header: Mapping[str, Any], doc: Mapping[str, Any],
                      mac_key: bytes) -> None:
    stored = header["__metadata__"].get(_SIGNATURE_KEY)
    if stored is None:
        raise _fail(path, "is not signed; refusing it because a key was given (save it "
                          "with imgcls.save(..., key=...) to sign it)")
    digest = stored[len(_SIGNATURE_PREFIX):] if stored.startswith(_SIGNATURE_PREFIX) else ""
    payload = doc.get("payload_sha256")
    if not (re.fullmatch("[0-9a-f]{64}", digest) and isinstance(payload, str)
            and re.fullmatch("[0-9a-f]{64}", payload)):
        raise _fail(path, "malformed signature (expected hmac-sha256 and 64 hex digits)")
    expected = _signature(mac_key, doc["metadata_sha256"], payload)
    if not hmac.compare_digest(expected, digest):
        raise _fail(path, "the signature does not match this key: the file was modified "
                          "after it was signed, or signed with another key")


def _read_tensors(path: Path, f: BinaryIO, entries: list[_Tensor],
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
                raise _fail(path, f"truncated while reading tensor {t.name!r}")
            done += got
        if t.dtype.kind == "b" and arr.size and int(arr.reshape(-1).view(np.uint8).max()) > 1:
            raise _fail(path, f"tensor {t.name!r}: a bool tensor holds bytes other than 0 "
                              "and 1")
        if not np.little_endian and t.dtype.itemsize > 1:
            arr = arr.astype(t.dtype.newbyteorder("="))
        tensors[t.name] = arr
    return tensors


def _decode_attributes(path: Path, doc: dict, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    table = doc.get("attributes")
    if not isinstance(table, dict):
        raise _fail(path, "corrupt metadata: no attribute table")
    listed = {k for k, v in table.items() if isinstance(v, dict) and "tensor" in v}
    if listed != set(tensors):
        raise _fail(path, f"the tensors {sorted(set(tensors))[:20]} do not match the metadata "
                          f"{sorted(listed)[:20]}")
    attrs: dict[str, Any] = {}
    for name, entry in table.items():
        if not (name.endswith("_") and not name.startswith("_") and name.isidentifier()):
            raise _fail(path, f"corrupt metadata: {name[:80]!r} is not a learned attribute name")
        if not isinstance(entry, dict) or len(entry) != 1:
            raise _fail(path, f"corrupt metadata for attribute {name!r}")
        if "tensor" in entry:
            spec = entry["tensor"]
            arr = tensors[name]
            if not isinstance(spec, dict) or spec.get("dtype") != arr.dtype.name \
                    or spec.get("shape") != list(arr.shape):
                raise _fail(path, f"tensor {name!r} does not have the dtype/shape the "
                                  "metadata states")
            attrs[name] = arr
        elif "json" in entry:
            try:
                attrs[name] = decode(entry["json"], name)
            except DecodeError as exc:
                raise _fail(path, f"corrupt metadata: {exc}") from None
        else:
            raise _fail(path, f"corrupt metadata for attribute {name!r}")
    return attrs


def _build(path: Path, doc: dict, registry: Mapping[str, type] | None) -> Any:
    """``cls(**params)`` for the allowed class the file names, parameters validated."""
    name = doc.get("estimator")
    try:
        cls = resolve_estimator(name, registry)
    except ImportError as exc:
        raise _fail(path, f"holds a {name}, which cannot be imported in this installation "
                          f"({exc})") from None
    if cls is None:
        raise _fail(path, f"unknown estimator class {str(name)[:80]!r}; a model file may only "
                          f"hold one of: {', '.join(allowed_names(registry))}")
    try:
        params = decode(doc.get("params"), "params")
    except DecodeError as exc:
        raise _fail(path, f"corrupt metadata: {exc}") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise _fail(path, "corrupt metadata: params is not a dict of names")
    # imgcls's own estimators always declare _parameter_constraints; a plug-in
    # class is validated when it declares them too.
    validate = name in BUILTIN_ESTIMATORS or getattr(cls, "_parameter_constraints", None) \
        is not None
    try:
        model = cls(**params)
        expected = set(model.get_params(deep=False))
        if set(params) != expected:
            missing, extra = sorted(expected - set(params)), sorted(set(params) - expected)
            raise ValueError(f"missing {missing}, unexpected {extra}")
        if validate:
            model._validate_params()
    except Exception as exc:  # whatever the class's own code raises for these values
        raise _fail(path, f"parameters rejected by {name}: {_one_line(exc)}") from None
    return model


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _check_generic(path: Path, cls: type, attrs: Mapping[str, Any]) -> None:
    """Rules of the imgcls estimator contract, for every class, schema or not.

    A name the class defines as a descriptor (a property such as
    ``templates_``, a method) cannot be a stored attribute; ``classes_`` is a numpy array of at
    least one axis; ``image_shape_`` is None or a tuple of positive ints whose
    product is ``n_features_in_``.
    """
    if not attrs:
        raise _fail(path, "holds no learned attributes: not a fitted model")
    for name in attrs:
        # a descriptor (property, method, slot) is the class's own code; a plain
        # class-level default such as ``classes_ = None`` may be shadowed
        static = inspect.getattr_static(cls, name, _ABSENT)
        if static is not _ABSENT and hasattr(type(static), "__get__"):
            raise _fail(path, f"{name}: a class attribute of {cls.__name__} (e.g. a read-only "
                              "property), not a learned attribute a file can set")
    classes = attrs.get("classes_", _ABSENT)
    if classes is not _ABSENT and not (isinstance(classes, np.ndarray) and classes.ndim >= 1):
        what = f"a {classes.ndim}-d array" if isinstance(classes, np.ndarray) \
            else f"a {type(classes).__name__}"
        raise _fail(path, f"classes_: must be a numpy array of at least one axis, got {what}")
    shape = attrs.get("image_shape_")
    if shape is not None:
        if not (isinstance(shape, tuple) and 1 <= len(shape) <= _MAX_NDIM
                and all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
                        and s >= 1 for s in shape)):
            raise _fail(path, f"image_shape_: must be None or a tuple of positive ints, got "
                              f"{str(shape)[:80]}")
        n_feat = attrs.get("n_features_in_")
        if isinstance(n_feat, (int, np.integer)) and math.prod(int(s) for s in shape) != n_feat:
            raise _fail(path, f"image_shape_: {tuple(int(s) for s in shape)} holds "
                              f"{math.prod(int(s) for s in shape)} values per sample, but "
                              f"n_features_in_ is {n_feat}")


_ABSENT = object()


def _stored_class_names(path: Path, doc: Mapping[str, Any], attrs: Mapping[str, Any]
                        ) -> list[str] | None:
    """The saved readable names: a list of str, one per entry of ``classes_``."""
    names = doc.get("class_names")
    if names is None:
        return None
    if not (isinstance(names, list) and all(isinstance(s, str) for s in names)):
        raise _fail(path, "corrupt metadata: class_names must be a list of str")
    classes = attrs.get("classes_")
    if classes is not None and len(names) != len(classes):
        raise _fail(path, f"corrupt metadata: class_names does not match classes_ "
                          f"({len(names)} names for {len(classes)} classes)")
    return list(names)


def load(path: str | os.PathLike, *, key: bytes | str | None = None,
         registry: Mapping[str, type] | None = None) -> Any:
    """Load a model saved with :func:`save`.

    Parameters
    ----------
    path : str or path-like
    key : bytes or str, optional
        The secret key the file was signed with (``save(..., key=...)``).  With
        a key, an unsigned file or one whose signature does not match is
        refused before any tensor is read.  Without one, signed and unsigned
        files load alike and only their integrity is checked.
    registry : dict of str -> type, optional
        Extra allowed classes for this call (tests, plug-ins).

    Returns
    -------
    model : fitted estimator
        ``cls(**params)`` with every learned attribute set back (arrays with
        their dtype and shape, tuples as tuples); ``class_names_`` is set when
        names were saved.  Caches such as search indexes are rebuilt lazily
        by the estimator.

    Raises
    ------
    ModelFileError
        The file is missing or not a regular file; truncated, damaged (tensor
        or metadata SHA-256 mismatch) or not an imgcls model file; malformed
        (nesting, NaN/Infinity or huge numbers, shapes the bytes do not hold);
        names an estimator class not on the allow-list; holds parameters the
        estimator's ``_parameter_constraints`` reject or learned attributes its
        schema rejects; is written in a newer format version; or, with ``key``,
        is unsigned or its signature does not match.  The message names the
        file and the cause.
    ValueError
        ``key`` is not bytes/str or shorter than :data:`MIN_KEY_BYTES` bytes.
    """
    path = Path(path)
    mac_key = _mac_key(key)
    with open_regular(path, error=ModelFileError, what="model file") as f:
        header, entries, data_start = _read_header(path, f)
        doc = _document(path, header)
        if mac_key is not None:
            _verify_signature(path, header, doc, mac_key)
        tensors = _read_tensors(path, f, entries, data_start)
    if tensor_sha256(tensors) != doc.get("payload_sha256"):
        raise _fail(path, "the tensor data was modified or damaged (SHA-256 mismatch)")
    attrs = _decode_attributes(path, doc, tensors)
    model = _build(path, doc, registry)
    cls = type(model)
    _check_generic(path, cls, attrs)
    names = _stored_class_names(path, doc, attrs)
    if names is not None:
        attrs["class_names_"] = names
    try:
        validate_learned_attributes(cls, attrs, params=model.get_params(deep=False))
    except Exception as exc:  # ValueError by contract; anything else still names the file
        cause = _one_line(exc) if isinstance(exc, ValueError) \
            else f"{type(exc).__name__}: {_one_line(exc)}"
        raise _fail(path, f"learned attributes rejected by {cls.__name__}: {cause}") from None
    if doc.get("input") != _describe_input(attrs):
        raise _fail(path, "corrupt metadata: input does not match image_shape_ / "
                          "n_features_in_")
    if doc.get("classes") != _classes_entry(attrs):
        raise _fail(path, "corrupt metadata: classes does not match classes_")
    for name, value in attrs.items():
        try:
            setattr(model, name, value)
        except Exception as exc:  # a plug-in's own __setattr__ or descriptor
            raise _fail(path, f"{name}: cannot be set on {cls.__name__} "
                              f"({_one_line(exc)})") from None
    return model
