"""The exceptions imgcls raises.

Every error a user can cause by bad input is one of these (or a plain
``ValueError`` raised by an estimator's parameter validation, as scikit-learn
does).  Each message names the file or argument at fault and what is wrong with
it, so that the CLI can print it as one line.

Hierarchy::

    ImgclsError
    ├── DatasetError (ValueError)       a data set cannot be found, read or trusted
    │   ├── FormatError                 a file is not in the format it claims
    │   ├── ChecksumError               a file's SHA-256 differs from the expected one
    │   ├── DownloadError               no mirror delivered a good file
    │   └── ImageError                  an image is corrupt, truncated or too large
    ├── ModelFileError (ValueError)     a model file is damaged, malformed, unsigned or too new
    ├── ConfigError (ValueError)        an unknown name or a value that cannot apply
    └── TrainingDivergedError (ArithmeticError)  the loss became NaN or infinite
"""

from __future__ import annotations


class ImgclsError(Exception):
    """Base class of every error imgcls raises on purpose."""


class DatasetError(ImgclsError, ValueError):
    """A data set cannot be found, read or trusted."""


class FormatError(DatasetError):
    """A file is not in the format its name or header claims."""


class ChecksumError(DatasetError):
    """A file's SHA-256 differs from the expected one."""


class DownloadError(DatasetError):
    """No mirror delivered a complete file with the right checksum."""


class ImageError(DatasetError):
    """An image file is corrupt, truncated, unreadable or over the pixel limit."""


class ModelFileError(ImgclsError, ValueError):
    """A model file is damaged, malformed, fails its signature check, or is too new."""


class ConfigError(ImgclsError, ValueError):
    """An unknown dataset/model/option name, or a value that cannot apply."""


class TrainingDivergedError(ImgclsError, ArithmeticError):
    """Training produced a NaN or infinite loss (usually: learning rate too high)."""


__all__ = [
    "ImgclsError",
    "DatasetError",
    "FormatError",
    "ChecksumError",
    "DownloadError",
    "ImageError",
    "ModelFileError",
    "ConfigError",
    "TrainingDivergedError",
]
