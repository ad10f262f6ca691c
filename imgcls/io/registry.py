"""The allow-list of estimator classes a model file may name.

A model file names its estimator by a short name (``"LinearSVM"``), never by a
dotted import path: the name is looked up here, and only the modules listed
below are ever imported because of a file.  Projects and tests can add their own
classes with :func:`register_estimator` (or pass ``registry=`` to
:func:`imgcls.io.save` / :func:`imgcls.io.load`); the built-in names cannot be
redefined, so a file that says ``"Softmax"`` always gets imgcls's Softmax.
"""

from __future__ import annotations

import importlib
from typing import Mapping

__all__ = ["BUILTIN_ESTIMATORS", "register_estimator", "unregister_estimator",
           "resolve_estimator", "allowed_names"]

#: name -> (module, attribute) of imgcls's own estimators.
BUILTIN_ESTIMATORS: dict[str, tuple[str, str]] = {
    "KNearestNeighbor": ("imgcls.neighbors", "KNearestNeighbor"),
    "NearestNeighbor": ("imgcls.neighbors", "NearestNeighbor"),
    "LinearSVM": ("imgcls.linear", "LinearSVM"),
    "Softmax": ("imgcls.linear", "Softmax"),
    # feature transformers, the steps of a saved pipeline (imgcls.io.pipelinefile)
    "Pixels": ("imgcls.features", "Pixels"),
    "HOG": ("imgcls.features", "HOG"),
    "ColorHistogram": ("imgcls.features", "ColorHistogram"),
    "KMeansFeatures": ("imgcls.features", "KMeansFeatures"),
    "OnnxEmbedder": ("imgcls.features.onnx", "OnnxEmbedder"),
}

_registered: dict[str, type] = {}


def register_estimator(cls: type, name: str | None = None) -> type:
    """Allow model files to hold estimators of class ``cls``.

    Usable as a decorator.  The class must follow the imgcls estimator contract
    (``get_params``, JSON-able parameters, learned attributes that are arrays or
    JSON values).

    Parameters
    ----------
    cls : type
    name : str, optional
        The name written to files; ``cls.__name__`` by default.

    Returns
    -------
    cls : the class, unchanged.

    Raises
    ------
    ValueError
        ``name`` is a built-in name, or already registered for another class.
    """
    if not isinstance(cls, type):
        raise ValueError(f"cls: expected a class, got {type(cls).__name__}")
    name = cls.__name__ if name is None else str(name)
    if name in BUILTIN_ESTIMATORS:
        raise ValueError(f"name: {name!r} is a built-in imgcls estimator and cannot be redefined")
    if _registered.get(name, cls) is not cls:
        raise ValueError(f"name: {name!r} is already registered for {_registered[name]!r}")
    _registered[name] = cls
    return cls


def unregister_estimator(name: str) -> None:
    """Remove a class added with :func:`register_estimator` (no error if absent)."""
    _registered.pop(name, None)


def allowed_names(registry: Mapping[str, type] | None = None) -> list[str]:
    return sorted({*BUILTIN_ESTIMATORS, *_registered, *(registry or {})})


def resolve_estimator(name: str, registry: Mapping[str, type] | None = None) -> type | None:
    """The class allowed under ``name``, or None for a name not on the allow-list.

    Looks in the built-ins first (importing only ``imgcls.neighbors`` or
    ``imgcls.linear``), then in ``registry``, then in the registered classes.

    Raises
    ------
    ImportError
        ``name`` is a built-in whose module cannot be imported here.
    """
    if not isinstance(name, str):
        return None
    if name in BUILTIN_ESTIMATORS:
        module, attr = BUILTIN_ESTIMATORS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except AttributeError as exc:
            raise ImportError(f"{module} has no {attr}") from exc
    if registry is not None and name in registry:
        return registry[name]
    return _registered.get(name)
