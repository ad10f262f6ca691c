"""imgcls: data-driven image classification.

Honest, fast baselines on images or image embeddings: k-nearest neighbours and
linear classifiers (multiclass SVM, softmax), hyperparameters chosen on
validation data or by cross-validation, and the lecture's pictures.

The public names below are imported lazily, so ``import imgcls`` (and the CLI's
start-up) does not pay for numba, scikit-learn or matplotlib until they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .config import config_context, get_config, set_config
from .errors import (ChecksumError, ConfigError, DatasetError, DownloadError, FormatError,
                     ImageError, ImgclsError, ModelFileError, TrainingDivergedError)

# public name -> module that defines it
_LAZY = {
    "load_dataset": "imgcls.datasets",
    "Dataset": "imgcls.datasets",
    "KNearestNeighbor": "imgcls.neighbors",
    "NearestNeighbor": "imgcls.neighbors",
    "LinearSVM": "imgcls.linear",
    "Softmax": "imgcls.linear",
    "Pixels": "imgcls.features",
    "HOG": "imgcls.features",
    "ColorHistogram": "imgcls.features",
    "KMeansFeatures": "imgcls.features",
    "OnnxEmbedder": "imgcls.features",
    "make_features": "imgcls.features",
    "save": "imgcls.io",
    "load": "imgcls.io",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imgcls' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "__version__", "get_config", "set_config", "config_context",
    "ImgclsError", "DatasetError", "FormatError", "ChecksumError", "DownloadError",
    "ImageError", "ModelFileError", "ConfigError", "TrainingDivergedError",
    *_LAZY,
]
