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
* **Deliberate edits**: the optional signature (:mod:`imgcls.io.signature`,
  where the signed message is spelled out).  ``save(..., key=K)`` stores an
  HMAC-SHA256 under ``K`` of both hashes; ``load(..., key=K)`` refuses an
  unsigned file or one whose signature does not match, before reading any
  tensor, so only holders of ``K`` can make a file that passes.  It tells who
  made a file, not which file is the latest.  ``load`` without a key checks
  integrity only.
* **Hostile files** (anyone's, signed or not): the reader itself is bounded.
  Only regular files are opened (a FIFO cannot make it wait); the header
  length, JSON nesting depth, numbers (no NaN/Infinity, at most
  :data:`~imgcls.io.jsonbounds.MAX_INT_DIGITS` digits; see
  :mod:`imgcls.io.jsonbounds`) and every declared shape (see
  :mod:`imgcls.io.tensorfile`) are checked against the bytes actually present
  before anything is allocated; the estimator class
  comes from an allow-list, its parameters pass the estimator's
  ``_parameter_constraints``, and its learned attributes pass its declared
  schema (:func:`imgcls._validation.validate_learned_attributes`).  No code
  from the file is ever run.  None of this makes a stranger's model *good*: a
  valid file may still hold weights chosen to mislead.  Use a key to know who
  made it.

Large models
------------
Saving streams every tensor to the file in blocks (a memory-mapped training
set, or a :class:`~imgcls.datasets.features.ShardedArray`, is never gathered
in memory), and ``load`` memory-maps tensors of at least
:data:`MMAP_MIN_BYTES` (``mmap=True``/``False`` to force), hashing the payload
from the file in blocks; see :mod:`imgcls.io.tensorfile`.

Every problem with a file raises :class:`~imgcls.errors.ModelFileError`
whose one-line message names the file and the cause.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._files import open_regular
from .._validation import validate_learned_attributes
from .._version import __version__
from ..errors import ModelFileError
from .atomic import atomic_write
from .codec import (TENSOR_DTYPES, DecodeError, EncodeError, decode, encode, is_tensor,
                    tensor_sha256)
from .jsonbounds import bounded_loads
from .registry import BUILTIN_ESTIMATORS, allowed_names, resolve_estimator
from .signature import (MIN_KEY_BYTES, SIGNATURE_KEY, SIGNATURE_PREFIX, sign, signing_key,
                        verify_signature)
from .tensorfile import (MAX_NDIM, fail, file_sha256, map_tensors, parse_json, read_header,
                         read_tensors, stream_sha256, write_safetensors)

__all__ = ["save", "load", "read_metadata", "FORMAT_NAME", "FORMAT_VERSION", "MIN_KEY_BYTES",
           "MMAP_MIN_BYTES"]

FORMAT_NAME = "imgcls-model"
#: The newest format this imgcls writes and reads.  Bump on incompatible changes.
FORMAT_VERSION = 1
_META_KEY = "imgcls"
# JSON nesting allowed in the metadata document: values nest a few levels
# below "attributes"; far below Python's recursion limit (1000) for json and
# the codec.
_DOC_MAX_DEPTH = 128
# learned attributes describing the input transformation, listed in "preprocessing"
_PREPROCESSING_ATTRS = ("mean_", "scale_", "std_", "center_", "min_", "max_")
#: ``load(..., mmap=None)`` memory-maps every tensor of at least this many bytes
#: (64 MiB): a kNN model's training set (60,000 MNIST images are 47 MB), not its
#: labels or a linear model's weights, which are read into memory as before.
MMAP_MIN_BYTES = 64 << 20


def _is_sharded(value: Any) -> bool:
    """A :class:`~imgcls.datasets.features.ShardedArray` (saved as one tensor, in blocks)."""
    if not hasattr(value, "iter_blocks"):
        return False
    from ..datasets.features import ShardedArray  # imported only when one may be saved

    return isinstance(value, ShardedArray) and value.dtype.name in TENSOR_DTYPES


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
        bounded_loads(text, _DOC_MAX_DEPTH)
        decode(doc["params"], "params")
        for attr, entry in doc["attributes"].items():
            if "json" in entry:
                decode(entry["json"], attr)
    except ValueError as exc:  # Refused, DecodeError
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
    from .pipelinefile import is_pipeline, save_pipeline

    if is_pipeline(model):  # feature transformers + classifier: see imgcls.io.pipelinefile
        return save_pipeline(model, path, classes=classes, preprocessing=preprocessing,
                             registry=registry, key=key)
    mac_key = signing_key(key)
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
        if is_tensor(value) or (not isinstance(value, np.ndarray) and _is_sharded(value)):
            # kept as they are (a memmap is not read into memory): the hash and the
            # writer stream each one in C-order little-endian blocks
            tensors[attr] = value
            table[attr] = {"tensor": {"dtype": value.dtype.name, "shape": list(value.shape)}}
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
        "payload_sha256": stream_sha256(tensors),
    }
    doc["metadata_sha256"] = _metadata_hash(doc)

    text = json.dumps(doc, allow_nan=False)
    _check_loads_back(name, text, doc)
    metadata = {_META_KEY: text}
    if mac_key is not None:
        metadata[SIGNATURE_KEY] = SIGNATURE_PREFIX + sign(
            mac_key, doc["metadata_sha256"], doc["payload_sha256"])
    with atomic_write(path, what="model file") as f:
        write_safetensors(f, tensors, metadata)
    return path


# ----------------------------------------------------------------------------- load

def _document(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    """The imgcls metadata document of a parsed header, checked (format, version, hash)."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or _META_KEY not in meta:
        raise fail(path, "a safetensors file without imgcls metadata; not a model saved "
                         "with imgcls.save")
    doc = parse_json(path, meta[_META_KEY], "corrupt imgcls metadata", _DOC_MAX_DEPTH)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise fail(path, "not an imgcls model file (unknown format name)")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail(path, f"corrupt metadata: bad format version {str(version)[:40]!r}")
    if version > FORMAT_VERSION:
        raise fail(path, f"written in model file format version {version} by imgcls "
                         f"{str(doc.get('imgcls_version', '?'))[:40]}; this imgcls "
                         f"{__version__} reads format version {FORMAT_VERSION} and older: "
                         "it needs a newer imgcls")
    if doc.get("metadata_sha256") != _metadata_hash(doc):
        raise fail(path, "the metadata was modified or damaged (SHA-256 mismatch)")
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
        header, _, _ = read_header(path, f)
    return _document(path, header)


def _decode_attributes(path: Path, doc: dict, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    table = doc.get("attributes")
    if not isinstance(table, dict):
        raise fail(path, "corrupt metadata: no attribute table")
    listed = {k for k, v in table.items() if isinstance(v, dict) and "tensor" in v}
    if listed != set(tensors):
        raise fail(path, f"the tensors {sorted(set(tensors))[:20]} do not match the metadata "
                         f"{sorted(listed)[:20]}")
    attrs: dict[str, Any] = {}
    for name, entry in table.items():
        if not (name.endswith("_") and not name.startswith("_") and name.isidentifier()):
            raise fail(path, f"corrupt metadata: {name[:80]!r} is not a learned attribute name")
        if not isinstance(entry, dict) or len(entry) != 1:
            raise fail(path, f"corrupt metadata for attribute {name!r}")
        if "tensor" in entry:
            spec = entry["tensor"]
            arr = tensors[name]
            if not isinstance(spec, dict) or spec.get("dtype") != arr.dtype.name \
                    or spec.get("shape") != list(arr.shape):
                raise fail(path, f"tensor {name!r} does not have the dtype/shape the "
                                 "metadata states")
            attrs[name] = arr
        elif "json" in entry:
            try:
                attrs[name] = decode(entry["json"], name)
            except DecodeError as exc:
                raise fail(path, f"corrupt metadata: {exc}") from None
        else:
            raise fail(path, f"corrupt metadata for attribute {name!r}")
    return attrs


def _build(path: Path, doc: dict, registry: Mapping[str, type] | None) -> Any:
    """``cls(**params)`` for the allowed class the file names, parameters validated."""
    name = doc.get("estimator")
    try:
        cls = resolve_estimator(name, registry)
    except ImportError as exc:
        raise fail(path, f"holds a {name}, which cannot be imported in this installation "
                         f"({exc})") from None
    if cls is None:
        raise fail(path, f"unknown estimator class {str(name)[:80]!r}; a model file may only "
                         f"hold one of: {', '.join(allowed_names(registry))}")
    try:
        params = decode(doc.get("params"), "params")
    except DecodeError as exc:
        raise fail(path, f"corrupt metadata: {exc}") from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise fail(path, "corrupt metadata: params is not a dict of names")
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
        raise fail(path, f"parameters rejected by {name}: {_one_line(exc)}") from None
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
        raise fail(path, "holds no learned attributes: not a fitted model")
    for name in attrs:
        # a descriptor (property, method, slot) is the class's own code; a plain
        # class-level default such as ``classes_ = None`` may be shadowed
        static = inspect.getattr_static(cls, name, _ABSENT)
        if static is not _ABSENT and hasattr(type(static), "__get__"):
            raise fail(path, f"{name}: a class attribute of {cls.__name__} (e.g. a read-only "
                             "property), not a learned attribute a file can set")
    classes = attrs.get("classes_", _ABSENT)
    if classes is not _ABSENT and not (isinstance(classes, np.ndarray) and classes.ndim >= 1):
        what = f"a {classes.ndim}-d array" if isinstance(classes, np.ndarray) \
            else f"a {type(classes).__name__}"
        raise fail(path, f"classes_: must be a numpy array of at least one axis, got {what}")
    shape = attrs.get("image_shape_")
    if shape is not None:
        if not (isinstance(shape, tuple) and 1 <= len(shape) <= MAX_NDIM
                and all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
                        and s >= 1 for s in shape)):
            raise fail(path, f"image_shape_: must be None or a tuple of positive ints, got "
                             f"{str(shape)[:80]}")
        n_feat = attrs.get("n_features_in_")
        if isinstance(n_feat, (int, np.integer)) and math.prod(int(s) for s in shape) != n_feat:
            raise fail(path, f"image_shape_: {tuple(int(s) for s in shape)} holds "
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
        raise fail(path, "corrupt metadata: class_names must be a list of str")
    classes = attrs.get("classes_")
    if classes is not None and len(names) != len(classes):
        raise fail(path, f"corrupt metadata: class_names does not match classes_ "
                         f"({len(names)} names for {len(classes)} classes)")
    return list(names)


def _mapped(entries: list, mmap: bool | None) -> list:
    """The tensor entries ``load`` memory-maps for this ``mmap`` setting."""
    if mmap is False or not np.little_endian:
        return []
    least = 1 if mmap else MMAP_MIN_BYTES
    return [t for t in entries if t.shape and t.end - t.start >= least]


def load(path: str | os.PathLike, *, key: bytes | str | None = None,
         registry: Mapping[str, type] | None = None, mmap: bool | None = None) -> Any:
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
    mmap : bool or None, default None
        Memory-map tensors instead of reading them: None maps those of at
        least :data:`MMAP_MIN_BYTES` (64 MiB; e.g. a large kNN training set,
        which then loads without being read into memory), True every
        non-empty tensor, False none.  A mapped tensor is a read-only
        ``numpy.memmap`` of the file's data; the payload SHA-256 is then
        computed from the file in blocks, and the learned-attribute checks
        (e.g. NaN/inf) read it in blocks, so memory stays small.  On a
        big-endian machine tensors are always read (the file is little-endian).

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
        ``key`` is not bytes/str or shorter than :data:`MIN_KEY_BYTES` bytes,
        or ``mmap`` is not True, False or None.
    """
    path = Path(path)
    mac_key = signing_key(key)
    if mmap is not None and not isinstance(mmap, (bool, np.bool_)):
        raise ValueError(f"mmap: must be True, False or None, got {mmap!r}")
    with open_regular(path, error=ModelFileError, what="model file") as f:
        header, entries, data_start = read_header(path, f)
        doc = _document(path, header)
        if mac_key is not None:
            verify_signature(path, header, doc, mac_key)
        mapped = _mapped(entries, mmap)
        tensors = read_tensors(path, f, [t for t in entries if t not in mapped], data_start)
        if mapped:
            tensors.update(map_tensors(path, f, mapped, data_start))
            digest = file_sha256(path, f, entries, data_start)
    if not mapped:
        digest = tensor_sha256(tensors)
    if digest != doc.get("payload_sha256"):
        raise fail(path, "the tensor data was modified or damaged (SHA-256 mismatch)")
    from .pipelinefile import PIPELINE, load_pipeline

    if doc.get("estimator") == PIPELINE:  # a whole pipeline: see imgcls.io.pipelinefile
        return load_pipeline(path, doc, tensors, registry)
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
        raise fail(path, f"learned attributes rejected by {cls.__name__}: {cause}") from None
    if doc.get("input") != _describe_input(attrs):
        raise fail(path, "corrupt metadata: input does not match image_shape_ / "
                         "n_features_in_")
    if doc.get("classes") != _classes_entry(attrs):
        raise fail(path, "corrupt metadata: classes does not match classes_")
    for name, value in attrs.items():
        try:
            setattr(model, name, value)
        except Exception as exc:  # a plug-in's own __setattr__ or descriptor
            raise fail(path, f"{name}: cannot be set on {cls.__name__} "
                             f"({_one_line(exc)})") from None
    return model
