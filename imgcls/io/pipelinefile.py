"""Model files holding a whole pipeline (feature transformers + classifier), no pickle.

A pipeline file is an ordinary imgcls model file (:mod:`imgcls.io.modelfile`:
same safetensors layout, hashes, optional signature, bounded reader) whose
metadata document says ``"estimator": "Pipeline"`` and describes the steps as
a tree instead of one estimator's ``params``/``attributes``::

    steps        {"pipeline": [[name, node], ...]}
    node         {"pipeline": [[name, node], ...]}       a nested Pipeline
               | {"union": [[name, node], ...]}          a FeatureUnion (hog+color)
               | {"estimator": short class name, "params": tagged JSON,
                  "attributes": {attr: {"tensor": {dtype, shape}} | {"json": value}}}

Each estimator node is what a single-model document holds, and is checked in
the same way on load: its class comes from the allow-list
(:mod:`imgcls.io.registry`, where the feature transformers are listed), its
parameters pass its ``_parameter_constraints``, its learned attributes its
``_learned_attribute_schema``.  A node's tensors are stored under
``"<step>/<step>/.../<attribute>"`` (e.g. ``"features/hog/..."``,
``"classifier/W_"``); every tensor in the file must belong to exactly one node.
``classes``, ``class_names`` and ``input`` describe the pipeline as a whole
(the final classifier's labels, the first step's input).

An :class:`~imgcls.features.onnx.OnnxEmbedder` step holds its model's path
(a parameter) and SHA-256, never the ONNX bytes; ``load`` opens the ONNX file
and refuses it when its hash differs (see :mod:`imgcls.features.onnx`).

``load`` returns an :class:`imgcls.pipeline.features.ImagePipeline`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._validation import validate_learned_attributes
from .._version import __version__
from .atomic import atomic_write
from .codec import EncodeError, encode, is_tensor
from .registry import allowed_names, resolve_estimator
from .signature import SIGNATURE_KEY, SIGNATURE_PREFIX, sign, signing_key
from .tensorfile import fail, stream_sha256, write_safetensors

__all__ = ["PIPELINE", "is_pipeline", "save_pipeline", "load_pipeline"]

#: The ``estimator`` value of a pipeline file's metadata document.
PIPELINE = "Pipeline"
# Pipelines inside pipelines/unions nest a few levels in practice (a union of
# feature sets inside the study's pipeline is two); more is a hostile file.
_MAX_NODE_DEPTH = 8
# Pipeline/FeatureUnion parameters that a file can represent: the defaults.
_PIPELINE_DEFAULTS = {"memory": None, "verbose": False, "transform_input": None}
_UNION_DEFAULTS = {"transformer_weights": None, "verbose": False, "n_jobs": None,
                   "verbose_feature_names_out": True}


def is_pipeline(model: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(model, Pipeline)


def _check_defaults(obj, defaults: Mapping[str, Any], what: str) -> None:
    params = obj.get_params(deep=False)
    for key, default in defaults.items():
        if key in params and params[key] is not default and params[key] != default:
            raise ValueError(f"model: cannot save a {what} with {key}={params[key]!r}; only "
                             f"the default ({default!r}) is stored in model files")


def _step_names(steps, what: str) -> None:
    for name, _ in steps:
        if not (isinstance(name, str) and name and "/" not in name and "__" not in name):
            raise ValueError(f"model: {what} step name {name!r} cannot be saved (a non-empty "
                             "str without '/' or '__')")


def _encode_node(est, prefix: str, tensors: dict, registry, depth: int) -> dict:
    from sklearn.pipeline import FeatureUnion, Pipeline

    from .modelfile import _check_fitted, _is_sharded, _learned_attributes

    if depth > _MAX_NODE_DEPTH:
        raise ValueError(f"model: pipelines nested deeper than {_MAX_NODE_DEPTH} levels")
    if isinstance(est, Pipeline):
        _check_defaults(est, _PIPELINE_DEFAULTS, "Pipeline")
        _step_names(est.steps, "Pipeline")
        return {"pipeline": [[n, _encode_node(s, f"{prefix}{n}/", tensors, registry, depth + 1)]
                             for n, s in est.steps]}
    if isinstance(est, FeatureUnion):
        _check_defaults(est, _UNION_DEFAULTS, "FeatureUnion")
        _step_names(est.transformer_list, "FeatureUnion")
        return {"union": [[n, _encode_node(s, f"{prefix}{n}/", tensors, registry, depth + 1)]
                          for n, s in est.transformer_list]}
    cls = type(est)
    name = cls.__name__
    try:
        allowed = resolve_estimator(name, registry)
    except ImportError:
        allowed = None
    if allowed is not cls:
        raise ValueError(f"model: step {prefix.rstrip('/')!r} is a {cls.__module__}."
                         f"{cls.__qualname__}; a pipeline file may only hold: "
                         f"{', '.join(allowed_names(registry))}, Pipeline, FeatureUnion")
    _check_fitted(est, Path(prefix.rstrip("/") or "step"))
    try:
        params = encode(dict(est.get_params(deep=False)), "params")
    except EncodeError as exc:
        raise ValueError(f"model: cannot save step {prefix.rstrip('/')!r} ({name}): {exc}") \
            from None
    table: dict[str, Any] = {}
    for attr, value in sorted(_learned_attributes(est).items()):
        if is_tensor(value) or (not isinstance(value, np.ndarray) and _is_sharded(value)):
            tensors[prefix + attr] = value
            table[attr] = {"tensor": {"dtype": value.dtype.name, "shape": list(value.shape)}}
        else:
            try:
                table[attr] = {"json": encode(value, attr)}
            except EncodeError as exc:
                raise ValueError(f"model: cannot save step {prefix.rstrip('/')!r} ({name}): "
                                 f"learned attribute {exc}") from None
    return {"estimator": name, "params": params, "attributes": table}


def _leaves(node: Mapping[str, Any]):
    """Estimator nodes, first to last (pipeline and union order)."""
    for key in ("pipeline", "union"):
        if key in node:
            for _, child in node[key]:
                yield from _leaves(child)
            return
    yield node


def save_pipeline(model, path: Path, *, classes=None, preprocessing=None, registry=None,
                  key=None) -> Path:
    """Write ``model`` (a fitted ``Pipeline``) as described in the module docstring.

    Called by :func:`imgcls.io.save`, which documents the parameters and errors.
    """
    from .modelfile import (FORMAT_NAME, FORMAT_VERSION, _META_KEY, _check_fitted,
                            _check_loads_back, _class_names, _classes_entry, _describe_input,
                            _learned_attributes, _metadata_hash)

    path = Path(path)
    mac_key = signing_key(key)
    if path.is_dir():
        raise IsADirectoryError(21, f"cannot save model to {str(path)!r}: it is a directory")
    _check_fitted(model, path)
    tensors: dict[str, Any] = {}
    tree = _encode_node(model, "", tensors, registry, 0)
    leaves = list(_leaves(tree))
    first = _learned_attributes(_first_leaf(model))
    final = _learned_attributes(model.steps[-1][1])
    if preprocessing is not None:
        try:
            json.dumps(preprocessing, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"preprocessing: must be JSON-able ({exc})") from None
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "imgcls_version": __version__,
        "estimator": PIPELINE,
        "params": {},
        "steps": tree,
        "classes": _classes_entry(final),
        "class_names": _class_names(classes, final),
        "input": _describe_input(first),
        "preprocessing": dict(preprocessing) if preprocessing is not None else {
            "input": "images for the first step", "steps": [leaf["estimator"] for leaf in leaves]},
        "attributes": {},
        "payload_sha256": stream_sha256(tensors),
    }
    doc["metadata_sha256"] = _metadata_hash(doc)
    text = json.dumps(doc, allow_nan=False)
    for leaf in leaves:
        _check_loads_back(leaf["estimator"], text, leaf)
    metadata = {_META_KEY: text}
    if mac_key is not None:
        metadata[SIGNATURE_KEY] = SIGNATURE_PREFIX + sign(
            mac_key, doc["metadata_sha256"], doc["payload_sha256"])
    with atomic_write(path, what="model file") as f:
        write_safetensors(f, tensors, metadata)
    return path


def _first_leaf(est):
    from sklearn.pipeline import FeatureUnion, Pipeline

    while isinstance(est, (Pipeline, FeatureUnion)):
        est = est.steps[0][1] if isinstance(est, Pipeline) else est.transformer_list[0][1]
    return est


# ----------------------------------------------------------------------------- load

def _children(path: Path, node: Any, key: str, where: str) -> list:
    kids = node[key]
    if not (isinstance(kids, list) and kids and all(
            isinstance(k, list) and len(k) == 2 and isinstance(k[0], str) and k[0]
            and "/" not in k[0] and "__" not in k[0] for k in kids)):
        raise fail(path, f"corrupt pipeline metadata at {where or 'the top'}: {key} must be a "
                         "non-empty list of [name, step] pairs")
    if len({k[0] for k in kids}) != len(kids):
        raise fail(path, f"corrupt pipeline metadata at {where or 'the top'}: a step name is "
                         "repeated")
    return kids


def _load_leaf(path: Path, node: dict, prefix: str, tensors: Mapping[str, np.ndarray],
               used: set, registry) -> Any:
    from .modelfile import _build, _check_generic, _decode_attributes, _one_line

    where = prefix.rstrip("/")
    if set(node) != {"estimator", "params", "attributes"} or \
            not isinstance(node.get("attributes"), dict):
        raise fail(path, f"corrupt pipeline metadata at step {where!r}")
    mine = {}
    for attr, entry in node["attributes"].items():
        if isinstance(entry, dict) and "tensor" in entry:
            if prefix + attr not in tensors:
                raise fail(path, f"step {where!r}: tensor {attr!r} is missing from the file")
            mine[attr] = tensors[prefix + attr]
            used.add(prefix + attr)
    attrs = _decode_attributes(path, node, mine)
    model = _build(path, node, registry)
    cls = type(model)
    _check_generic(path, cls, attrs)
    try:
        validate_learned_attributes(cls, attrs, params=model.get_params(deep=False))
    except Exception as exc:
        cause = _one_line(exc) if isinstance(exc, ValueError) \
            else f"{type(exc).__name__}: {_one_line(exc)}"
        raise fail(path, f"step {where!r}: learned attributes rejected by {cls.__name__}: "
                         f"{cause}") from None
    for name, value in attrs.items():
        try:
            setattr(model, name, value)
        except Exception as exc:
            raise fail(path, f"step {where!r}: {name} cannot be set on {cls.__name__} "
                             f"({_one_line(exc)})") from None
    check = getattr(model, "check_model_file", None)
    if callable(check):  # a step that refers to another file (OnnxEmbedder): hash checked
        try:
            check()
        except Exception as exc:
            raise fail(path, f"step {where!r}: {_one_line(exc)}") from None
    return model


def _load_node(path: Path, node: Any, prefix: str, tensors, used: set, registry, depth: int):
    from sklearn.pipeline import FeatureUnion

    from ..pipeline.features import ImagePipeline

    where = prefix.rstrip("/")
    if depth > _MAX_NODE_DEPTH:
        raise fail(path, f"pipeline steps nested deeper than {_MAX_NODE_DEPTH} levels")
    if not isinstance(node, dict):
        raise fail(path, f"corrupt pipeline metadata at {where or 'the top'}")
    if depth == 0 and "pipeline" not in node:
        raise fail(path, "corrupt pipeline metadata: the top is not a pipeline")
    for key, make in (("pipeline", ImagePipeline), ("union", FeatureUnion)):
        if key in node:
            if len(node) != 1:
                raise fail(path, f"corrupt pipeline metadata at {where or 'the top'}")
            steps = [(n, _load_node(path, child, f"{prefix}{n}/", tensors, used, registry,
                                    depth + 1))
                     for n, child in _children(path, node, key, where)]
            return make(steps)
    return _load_leaf(path, node, prefix, tensors, used, registry)


def load_pipeline(path: Path, doc: dict, tensors: Mapping[str, np.ndarray], registry=None):
    """The pipeline a checked document and its tensors describe (called by :func:`imgcls.io.load`).

    Raises
    ------
    ModelFileError
        A malformed step tree, a step class not on the allow-list, parameters
        or learned attributes a step rejects, tensors that belong to no step,
        a whole-pipeline description that does not match its steps, or an
        ONNX file that is not the one fitted.
    """
    from .modelfile import _classes_entry, _describe_input, _stored_class_names

    if doc.get("params") != {} or doc.get("attributes") != {}:
        raise fail(path, "corrupt pipeline metadata: params/attributes belong in the steps")
    used: set = set()
    model = _load_node(path, doc.get("steps"), "", tensors, used, registry, 0)
    stray = sorted(set(tensors) - used)
    if stray:
        raise fail(path, f"tensors {stray[:10]} belong to no step of the pipeline")
    final = model.steps[-1][1]
    final_attrs = {k: v for k, v in vars(final).items() if k.endswith("_")
                   and not k.startswith("_")}
    if doc.get("classes") != _classes_entry(final_attrs):
        raise fail(path, "corrupt metadata: classes does not match the classifier's classes_")
    first = _first_leaf(model)
    if doc.get("input") != _describe_input({k: v for k, v in vars(first).items()
                                            if k.endswith("_")}):
        raise fail(path, "corrupt metadata: input does not match the first step")
    names = _stored_class_names(path, doc, final_attrs)
    if names is not None:
        final.class_names_ = names
    return model
