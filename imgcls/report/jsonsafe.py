"""Turning results (with numpy values in them) into strict JSON."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(value: Any, where: str = "results") -> Any:
    """A copy of ``value`` that :func:`json.dumps` writes as strict JSON.

    numpy scalars become Python numbers, arrays become (nested) lists, tuples
    and sets become lists, paths become strings, dict keys become strings, and
    NaN or infinite floats become ``None`` (JSON has no NaN; ``JSON.parse`` in a
    browser rejects it).

    Parameters
    ----------
    value : any
    where : str
        How to name ``value`` in an error message.

    Raises
    ------
    TypeError
        A value of another type (e.g. an estimator object), named by its
        position, such as ``results['models']['knn']['params']['metric']``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, (bytes, complex)):
            raise TypeError(f"{where}: a {type(value).__name__} cannot be written as JSON")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUS":
            raise TypeError(f"{where}: an array of dtype {value.dtype} cannot be written as JSON")
        return to_jsonable(value.tolist(), where)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(sorted(value, key=repr))]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where}: a {type(value).__name__} cannot be written as JSON")
