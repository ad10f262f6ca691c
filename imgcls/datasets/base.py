"""The :class:`Dataset` container, the registry of named data sets and :func:`load_dataset`.

Each loader module (``digits``, ``mnist``, ``cifar``, ``folder``, ``arrays``)
registers itself here with :func:`register`; ``load_dataset`` only dispatches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, DatasetError


@dataclass
class Dataset:
    """A labelled image (or feature) set split into training and test parts.

    Attributes
    ----------
    name : str
        The name it was loaded under, e.g. ``"mnist"`` or ``"folder:/data/pets"``.
    X_train : ndarray of shape (n_train, H, W, C) uint8, or (n_train, d) float
        Images (``uint8``, channels last) or precomputed features (``npz:`` only).
    y_train : ndarray of shape (n_train,) int64
        Class indices in ``0..n_classes-1``.
    X_test : ndarray of shape (n_test, H, W, C) or (n_test, d)
    y_test : ndarray of shape (n_test,) int64
    classes : list of str
        Class names; ``classes[y]`` is the name of label ``y``.
    source : str
        Where the data came from (files, archive, checksum status, split rule).
    skipped : list of (str, str)
        ``(path, reason)`` of every file left out with ``on_error="skip"``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Fail here rather than deep inside an estimator: the contract every other
        # folder relies on is int64 labels in 0..n_classes-1, one per sample.
        n_classes = len(self.classes)
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if not (isinstance(y, np.ndarray) and y.dtype == np.int64 and y.ndim == 1):
                raise DatasetError(f"{self.name}: y_{split} must be a 1-D int64 array")
            if len(X) != len(y):
                raise DatasetError(f"{self.name}: X_{split} has {len(X)} samples but "
                                   f"y_{split} has {len(y)} labels")
            if y.size and (y.min() < 0 or y.max() >= n_classes):
                raise DatasetError(f"{self.name}: y_{split} holds labels outside "
                                   f"0..{n_classes - 1}")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description: sizes, sample shape, dtype, classes, counts per split.

        Returns
        -------
        dict
            Keys ``name, source, n_train, n_test, n_classes, classes, dtype``,
            ``image_shape`` (list ``[H, W, C]``, or None for feature vectors),
            ``n_features`` (values per sample), ``counts`` (``{"train": [...],
            "test": [...]}``, samples per class index) and ``n_skipped``.
        """
        sample_shape = tuple(int(s) for s in self.X_train.shape[1:])
        is_image = len(sample_shape) == 3
        return {
            "name": self.name,
            "source": self.source,
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "n_classes": self.n_classes,
            "classes": list(self.classes),
            "dtype": str(self.X_train.dtype),
            "image_shape": list(sample_shape) if is_image else None,
            "n_features": int(np.prod(sample_shape)) if sample_shape else 0,
            "counts": {
                "train": np.bincount(self.y_train, minlength=self.n_classes).tolist(),
                "test": np.bincount(self.y_test, minlength=self.n_classes).tolist(),
            },
            "n_skipped": len(self.skipped),
        }

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, X_train={self.X_train.shape} {self.X_train.dtype}, "
                f"X_test={self.X_test.shape}, n_classes={self.n_classes}, source={self.source!r})")


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one named data set (or a family such as ``folder:PATH``)."""

    name: str
    description: str
    loader: Callable[..., Dataset]
    downloadable: bool = False
    prefix: bool = False  # True for "folder:" / "npz:" style names taking a path


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # The loader modules register themselves on import.
    # Imported one by one so that list_datasets() shows them in this order.
    from . import digits  # noqa: F401
    from . import mnist  # noqa: F401
    from . import cifar  # noqa: F401
    from . import folder  # noqa: F401
    from . import arrays  # noqa: F401


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`; path families end in ``PATH``.

    Returns
    -------
    list of str
        e.g. ``["digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
        "folder:PATH", "npz:PATH"]``.
    """
    _ensure_loaded()
    return [f"{s.name}:PATH" if s.prefix else s.name for s in _REGISTRY.values()]


def get_spec(name: str) -> tuple[DatasetSpec, str | None]:
    """The spec for ``name`` and, for ``family:PATH`` names, the path part."""
    _ensure_loaded()
    if not isinstance(name, str) or not name:
        raise ConfigError(f"dataset name must be a non-empty string, got {name!r}")
    family, sep, rest = name.partition(":")
    spec = _REGISTRY.get(family.lower() if sep else name.lower())
    if spec is None or spec.prefix != bool(sep):
        known = ", ".join(list_datasets())
        raise ConfigError(f"unknown dataset {name!r}; known: {known}")
    if spec.prefix and not rest:
        raise ConfigError(f"dataset {name!r} needs a path, e.g. '{spec.name}:/data/my_set'")
    return spec, (rest if sep else None)


def load_dataset(name: str, root: str | Path | None = None, download: bool = False,
                 **options: Any) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`: ``digits``, ``mnist``, ``fashion-mnist``,
        ``cifar10``, ``cifar100``, ``folder:PATH`` or ``npz:PATH``.
    root : str or Path, optional
        The folder holding the data set's files (e.g. the four MNIST ``.gz``
        files).  Default: ``$IMGCLS_DATA/<name>``, else the user cache dir
        (``$XDG_CACHE_HOME/imgcls/<name>`` or ``~/.cache/imgcls/<name>``).
        Ignored by ``digits``, ``folder:`` and ``npz:``.
    download : bool, default False
        Fetch missing files from the official mirrors (SHA-256 verified).
    **options
        Loader options, e.g. ``verify=False`` (mnist/cifar), ``label="coarse"``
        (cifar100), ``image_size``, ``mode``, ``on_error``, ``max_pixels``,
        ``test_size``, ``seed`` (folder, npz, digits).

    Returns
    -------
    Dataset

    Raises
    ------
    ConfigError
        Unknown name or option.
    DatasetError
        Missing files (and ``download=False``), bad formats, checksum mismatch,
        failed downloads, unreadable images: see :mod:`imgcls.errors`.
    """
    spec, path = get_spec(name)
    if spec.prefix:
        return spec.loader(path, name=name, **options)
    return spec.loader(root=root, download=download, **options)


def dataset_info(name: str) -> dict[str, Any]:
    """Static facts about a named data set (no loading): description, files, downloadable."""
    spec, _ = get_spec(name)
    info = {"name": spec.name, "description": spec.description, "downloadable": spec.downloadable}
    return info


def check_options(dataset: str, options: dict[str, Any], allowed: set[str]) -> None:
    """Reject unknown loader options by name (a typo must not be silently ignored)."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"{dataset}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")


def stratified_split(y: np.ndarray, test_size: float, seed: int, what: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a seeded split keeping class proportions.

    Uses scikit-learn's ``train_test_split(stratify=y)``, so a given
    ``(y, test_size, seed)`` always yields the same split.  Both index arrays
    are sorted, so samples keep their original order within each part.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) \
            or not 0 < test_size < 1:
        raise ConfigError(f"{what}: test_size must be a fraction in (0, 1), got {test_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"{what}: seed must be an int, got {seed!r}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    try:
        tr, te = train_test_split(idx, test_size=test_size, random_state=int(seed), stratify=y)
    except ValueError as exc:  # e.g. a class with a single sample
        raise DatasetError(f"{what}: cannot make a stratified split with "
                           f"test_size={test_size}: {exc}") from None
    return np.sort(tr), np.sort(te)
