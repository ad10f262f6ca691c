"""Model files without pickle, and atomic file writes.

``save(model, path)`` writes one safetensors file: the learned arrays as
tensors and a JSON document (format version, imgcls version, estimator class
from an allow-list, parameters, class names, input shape, preprocessing,
SHA-256 of the payload and of the metadata).  ``load(path)`` checks all of it
and rebuilds the estimator, validating its parameters and learned attributes;
any problem with the file raises :class:`~imgcls.errors.ModelFileError`
naming the file and the cause.

What each mechanism protects against (details in :mod:`imgcls.io.modelfile`):

* the embedded SHA-256s catch **accidents** (truncation, damaged downloads,
  flipped bits), but NOT someone who edits the file and recomputes them;
* the optional signature, ``save(..., key=K)`` / ``load(..., key=K)``
  (HMAC-SHA256 under a secret key of at least 16 bytes), catches **edits by
  anyone without the key**: ``load`` with a key refuses unsigned files and
  mismatching signatures;
* neither makes a file from a stranger trustworthy.  What holds for every
  file is that reading it is **bounded**: regular files only, no code run,
  sizes, nesting and numbers checked before anything is allocated, the
  estimator's parameters and learned attributes validated.

Writes (:func:`atomic_write`) are atomic, follow symbolic links (the link is
kept) and keep an existing file's permission bits.
"""

from __future__ import annotations

from .atomic import atomic_write, write_bytes_atomic, write_files_atomic
from .modelfile import FORMAT_NAME, FORMAT_VERSION, MIN_KEY_BYTES, load, read_metadata, save
from .registry import BUILTIN_ESTIMATORS, register_estimator, unregister_estimator

__all__ = [
    "save", "load", "read_metadata", "register_estimator", "unregister_estimator",
    "BUILTIN_ESTIMATORS", "FORMAT_NAME", "FORMAT_VERSION", "MIN_KEY_BYTES",
    "atomic_write", "write_bytes_atomic", "write_files_atomic",
]
