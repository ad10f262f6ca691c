"""Model files: a safetensors payload plus one JSON metadata document, no pickle.

Layout of a model file (one ``.safetensors`` file)::

    tensors        every learned attribute that is a numeric/bool numpy array,
                   under its attribute name (e.g. "W_", "b_", "X_fit_", "classes_")
    __metadata__   {"imgcls": "<JSON document>"}, the document holding:
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
        metadata_sha256               SHA-256 of this document without the two hashes

Loading reads the header with safetensors (``safe_open``), checks the format
version, both hashes and the allow-list, then rebuilds ``cls(**params)`` and
sets each learned attribute back.  Tagged JSON (:mod:`imgcls.io.codec`)
restores tuples, dict keys, numpy scalars and string arrays faithfully.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._version import __version__
from ..errors import ModelFileError
from .atomic import write_bytes_atomic
from .codec import DecodeError, EncodeError, decode, encode, is_tensor, tensor_sha256
from .registry import allowed_names, resolve_estimator

__all__ = ["save", "load", "read_metadata", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "imgcls-model"
#: The newest format this imgcls writes and reads.  Bump on incompatible changes.
FORMAT_VERSION = 1
_META_KEY = "imgcls"
# safetensors refuses headers above 100 MB; so do we, before reading one.
_MAX_HEADER = 100 * 1024 * 1024
# learned attributes describing the input transformation, listed in "preprocessing"
_PREPROCESSING_ATTRS = ("mean_", "scale_", "std_", "center_", "min_", "max_")


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
    body = {k: v for k, v in doc.items() if k not in ("metadata_sha256",)}
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
    arr = np.asarray(classes)
    values = arr.tolist() if arr.dtype.kind in "biufU" else [str(c) for c in arr.tolist()]
    return {"dtype": arr.dtype.str if arr.dtype.kind in "US" else arr.dtype.name,
            "values": values}


def _class_names(classes: Any, attrs: Mapping[str, Any]) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__"):
        raise ValueError(f"classes: expected a list of class names, got {type(classes).__name__}")
    names = [str(c) for c in classes]
    n = len(np.asarray(attrs["classes_"])) if "classes_" in attrs else None
    if n is not None and len(names) != n:
        raise ValueError(f"classes: {len(names)} names given but the model has {n} classes "
                         "(classes_); give one name per entry of classes_")
    return names


def save(model: Any, path: str | os.PathLike, *, classes: Any = None,
         preprocessing: Mapping[str, Any] | None = None,
         registry: Mapping[str, type] | None = None) -> Path:
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

    Returns
    -------
    path : Path

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The model is not fitted (a ``ValueError``).
    ValueError
        The class is not on the allow-list, a parameter or learned attribute
        has no JSON/tensor form (named), or ``classes`` has the wrong length.
    OSError
        The file cannot be written (the message names the path).
    """
    path = Path(path)
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
            arr = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))
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

    data = st_save(tensors, metadata={_META_KEY: json.dumps(doc, allow_nan=False)})
    return write_bytes_atomic(path, data, what="model file")


# ----------------------------------------------------------------------------- load

def _fail(path: Path, message: str) -> ModelFileError:
    return ModelFileError(f"{path}: {message}")


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors header as JSON, with precise errors for short or foreign files."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _fail(path, "no such model file") from None
    except OSError as exc:
        raise _fail(path, f"cannot read the model file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise _fail(path, "is a directory, not a model file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _fail(path, f"truncated, empty or not a model file: {size} bytes is "
                                  "too short for a model file")
            (n,) = struct.unpack("<Q", head)
            first = f.read(1)
            if first != b"{" or n > _MAX_HEADER:
                raise _fail(path, "not an imgcls model file (no safetensors header; is it "
                                  "a model saved with imgcls.save?)")
            if 8 + n > size:
                raise _fail(path, f"truncated: the header needs {8 + n} bytes but the file "
                                  f"has {size}")
            raw = first + f.read(n - 1)
    except OSError as exc:
        raise _fail(path, f"cannot read the model file ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(path, "corrupt header (not valid JSON); the file is damaged or not a "
                          "model file") from None
    if not isinstance(header, dict):
        raise _fail(path, "corrupt header (not a JSON object)")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) for o in offsets)):
            raise _fail(path, f"corrupt header entry for tensor {key!r}")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise _fail(path, f"truncated: {size} bytes, but the header describes "
                          f"{8 + n + end} bytes")
    return header


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata document of a model file, checked but not decoded.

    Checks that the file is a complete safetensors file carrying imgcls
    metadata of a supported format version, with an intact metadata hash.
    Tensors are not read (use :func:`load` for the model).

    Raises
    ------
    ModelFileError
        Missing, truncated, foreign, tampered or future-version file.
    """
    path = Path(path)
    header = _read_header(path)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise _fail(path, "a safetensors file without imgcls metadata; not a model saved "
                          "with imgcls.save")
    try:
        doc = json.loads(meta[_META_KEY])
    except (TypeError, json.JSONDecodeError):
        raise _fail(path, "corrupt imgcls metadata (not valid JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise _fail(path, "not an imgcls model file (unknown format name)")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, f"corrupt metadata: bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise _fail(path, f"written in model file format version {version} by imgcls "
                          f"{doc.get('imgcls_version', '?')}; this imgcls {__version__} reads "
                          f"format version {FORMAT_VERSION} and older: it needs a newer imgcls")
    if doc.get("metadata_sha256") != _metadata_hash(doc):
        raise _fail(path, "the metadata was modified or damaged (SHA-256 mismatch)")
    return doc


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError for any bad file
        raise _fail(path, f"damaged tensor data ({exc})") from None


def _decode_attributes(path: Path, doc: dict, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    table = doc.get("attributes")
    if not isinstance(table, dict):
        raise _fail(path, "corrupt metadata: no attribute table")
    listed = {k for k, v in table.items() if isinstance(v, dict) and "tensor" in v}
    if listed != set(tensors):
        raise _fail(path, f"the tensors {sorted(set(tensors))} do not match the metadata "
                          f"{sorted(listed)}")
    attrs: dict[str, Any] = {}
    for name, entry in table.items():
        if not (isinstance(name, str) and name.endswith("_") and not name.startswith("_")
                and name.isidentifier()):
            raise _fail(path, f"corrupt metadata: {name!r} is not a learned attribute name")
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
    try:
        model = cls(**params)
        expected = set(model.get_params(deep=False))
        if set(params) != expected:
            missing, extra = sorted(expected - set(params)), sorted(set(params) - expected)
            raise ValueError(f"missing {missing}, unexpected {extra}")
        validate = getattr(model, "_validate_params", None)
        if callable(validate) and getattr(cls, "_parameter_constraints", None):
            validate()
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"parameters rejected by {name}: {exc}") from None
    return model


def load(path: str | os.PathLike, *, registry: Mapping[str, type] | None = None) -> Any:
    """Load a model saved with :func:`save`.

    Parameters
    ----------
    path : str or path-like
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
        The file is missing, truncated, not an imgcls model file, tampered
        with (tensor or metadata SHA-256 mismatch, an estimator class not on
        the allow-list, parameters the estimator rejects), or written in a
        newer format version.  The message names the file.
    """
    path = Path(path)
    doc = read_metadata(path)
    tensors = _read_tensors(path)
    if tensor_sha256(tensors) != doc.get("payload_sha256"):
        raise _fail(path, "the tensor data was modified or damaged (SHA-256 mismatch)")
    attrs = _decode_attributes(path, doc, tensors)
    model = _build(path, doc, registry)
    for name, value in attrs.items():
        setattr(model, name, value)
    names = doc.get("class_names")
    if names is not None:
        n = len(np.asarray(attrs.get("classes_", names)))
        if not isinstance(names, list) or len(names) != n \
                or not all(isinstance(s, str) for s in names):
            raise _fail(path, "corrupt metadata: class_names does not match classes_")
        model.class_names_ = list(names)
    return model
