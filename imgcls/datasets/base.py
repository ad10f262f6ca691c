"""The :class:`Dataset` container, the table of named data sets and :func:`load_dataset`.

:data:`DATASETS` lists every name once, in the order :func:`list_datasets`
shows, with the module and attribute of its loader (the same ``name ->
(module, attribute)`` shape as the model-file allow-list in
:mod:`imgcls.io.registry`).  A loader module is imported only when its data set
is loaded, so the loaders import this module and never the other way round,
and ``load_dataset("digits")`` does not pull in Pillow.
"""

from __future__ import annotations

import importlib
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
        Images (``uint8``, channels last) or precomputed features (``npz:``,
        ``features:``; ``features:`` gives a read-only ``numpy.memmap``, or a
        :class:`~imgcls.datasets.features.ShardedArray` for shards).
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
    """One named data set (or a family such as ``folder:PATH``) and where its loader lives.

    Attributes
    ----------
    name : str
        The lower-case name, or the family prefix before ``:`` for ``prefix`` entries.
    module : str
        The module defining the loader, imported only by :meth:`load`.
    loader : str
        The loader's attribute name in ``module``.  Fixed names are called as
        ``loader(root=..., download=..., **options)``, families as
        ``loader(path, name=..., **options)``.
    description : str
        One line for ``imgcls datasets list``.
    downloadable : bool
        Whether ``download=True`` / ``imgcls datasets download`` can fetch it.
    prefix : bool
        True for families whose names carry a path (``folder:PATH``, ``npz:PATH``).
    """

    name: str
    module: str
    loader: str
    description: str
    downloadable: bool = False
    prefix: bool = False

    def load(self) -> Callable[..., Dataset]:
        """The loader function (importing its module now, not before)."""
        return getattr(importlib.import_module(self.module), self.loader)


def _table(*specs: DatasetSpec) -> dict[str, DatasetSpec]:
    return {spec.name: spec for spec in specs}


#: Every data set name, in the order :func:`list_datasets` returns them.
DATASETS: dict[str, DatasetSpec] = _table(
    DatasetSpec("digits", "imgcls.datasets.digits", "load_digits",
                "scikit-learn's 8x8 handwritten digits, 1797 images, bundled (no download)"),
    DatasetSpec("mnist", "imgcls.datasets.mnist", "load_mnist",
                "MNIST handwritten digits, 28x28 grey, 60000 train / 10000 test (IDX)",
                downloadable=True),
    DatasetSpec("fashion-mnist", "imgcls.datasets.mnist", "load_fashion_mnist",
                "Zalando Fashion-MNIST clothing, 28x28 grey, 60000 / 10000, 10 classes (IDX)",
                downloadable=True),
    DatasetSpec("cifar10", "imgcls.datasets.cifar", "load_cifar10",
                "CIFAR-10 tiny colour images, 32x32x3, 50000 train / 10000 test, 10 classes",
                downloadable=True),
    DatasetSpec("cifar100", "imgcls.datasets.cifar", "load_cifar100",
                "CIFAR-100, 32x32x3, 50000 / 10000, 100 fine classes "
                "(label='coarse' for the 20 super-classes)", downloadable=True),
    DatasetSpec("folder", "imgcls.datasets.folder", "load_folder",
                "an image tree PATH/<class>/<image> or PATH/train|test/<class>/<image> "
                "(PNG, JPEG, BMP, GIF, WebP)", prefix=True),
    DatasetSpec("npz", "imgcls.datasets.arrays", "load_arrays",
                "precomputed arrays (e.g. embeddings) in a .npz file or a folder of .npy "
                "files: X_train/y_train/X_test/y_test or X/y", prefix=True),
    DatasetSpec("features", "imgcls.datasets.features", "load_features",
                "large feature sets, memory-mapped: a folder of X_train/y_train/X_test/"
                "y_test .npy (or X_train-00000.npy shards), float32/float16/uint8",
                prefix=True),
)


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`; path families end in ``PATH``.

    Returns
    -------
    list of str
        e.g. ``["digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
        "folder:PATH", "npz:PATH", "features:PATH"]``.
    """
    return [f"{s.name}:PATH" if s.prefix else s.name for s in DATASETS.values()]


def get_spec(name: str) -> tuple[DatasetSpec, str | None]:
    """The spec for ``name`` and, for ``family:PATH`` names, the path part.

    Names are case-insensitive; no loader module is imported.

    Raises
    ------
    ConfigError
        Not a string, an unknown name, a family without a path, or a path
        given to a fixed name.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"dataset name must be a non-empty string, got {name!r}")
    family, sep, rest = name.partition(":")
    spec = DATASETS.get(family.lower() if sep else name.lower())
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
        ``cifar10``, ``cifar100``, ``folder:PATH``, ``npz:PATH`` or
        ``features:PATH`` (memory-mapped, see :mod:`imgcls.datasets.features`).
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
    loader = spec.load()
    if spec.prefix:
        return loader(path, name=name, **options)
    return loader(root=root, download=download, **options)


def dataset_info(name: str) -> dict[str, Any]:
    """Static facts about a named data set, read from the table without importing its loader.

    Returns
    -------
    dict
        ``name`` (the table name, the family for ``family:PATH``), ``description``,
        ``downloadable``.
    """
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
