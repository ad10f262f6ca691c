"""Data sets as plain arrays: ``load_dataset(name, root=None, download=False, **options)``.

Names: ``digits`` (bundled), ``mnist``, ``fashion-mnist``, ``cifar10``,
``cifar100`` (downloadable, SHA-256 verified), ``folder:PATH`` (an image tree)
and ``npz:PATH`` (precomputed arrays).  See :func:`load_dataset`.
"""

from __future__ import annotations

from .base import Dataset, dataset_info, list_datasets, load_dataset
from .locations import cache_dir

__all__ = ["Dataset", "load_dataset", "list_datasets", "dataset_info", "cache_dir"]
