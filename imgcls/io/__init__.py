"""Model files without pickle, and atomic file writes.

``save(model, path)`` writes one safetensors file: the learned arrays as
tensors and a JSON document (format version, imgcls version, estimator class
from an allow-list, parameters, class names, input shape, preprocessing,
SHA-256 of the payload and of the metadata).  ``load(path)`` checks all of it
and rebuilds the estimator; a missing, truncated, foreign, tampered or
future-version file raises :class:`~imgcls.errors.ModelFileError` naming the
file.  See :mod:`imgcls.io.modelfile` for the layout.
"""

from __future__ import annotations

from .atomic import atomic_write, write_bytes_atomic, write_files_atomic
from .modelfile import FORMAT_NAME, FORMAT_VERSION, load, read_metadata, save
from .registry import BUILTIN_ESTIMATORS, register_estimator, unregister_estimator

__all__ = [
    "save", "load", "read_metadata", "register_estimator", "unregister_estimator",
    "BUILTIN_ESTIMATORS", "FORMAT_NAME", "FORMAT_VERSION",
    "atomic_write", "write_bytes_atomic", "write_files_atomic",
]
