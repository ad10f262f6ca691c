"""What runs on a Dask worker: opening a shard file, and searching resident shards.

A shard is a block of consecutive training rows, held by one worker for the
life of the model: either an array the client scattered once, or a ``.npy``
file the worker opens itself, memory-mapped.  A file shard is identified by
its size and SHA-256, recorded when the model is fitted and checked every time
a worker opens the file (also when Dask reruns the open on another worker
after a failure), so a file that changed after ``fit`` is refused rather than
searched; between opens, each search checks that the file's size and
modification time are still those seen at open.

Every function here is a plain top-level function, so Dask ships it by
reference (module and name), and imports only imgcls and numpy.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DatasetError

__all__ = ["ShardInfo", "FileShard", "ArrayShard", "shard_info", "open_shard", "hold_array",
           "search_shards"]

#: Bytes hashed per read: large enough to stream at disk speed, small enough
#: to keep a worker's memory flat.
_HASH_BLOCK = 8 << 20


@dataclass(frozen=True)
class ShardInfo:
    """What the client records about a shard file at ``fit``."""

    path: str
    size: int
    sha256: str
    n_rows: int
    n_features: int
    dtype: str


def _prepared(rows, cache_bytes):
    from ..neighbors.prepared import PreparedTrainingSet

    return PreparedTrainingSet(rows, cache_bytes)


@dataclass
class ArrayShard:
    """A scattered shard as a worker holds it: its rows and their search preparation.

    The preparation (norms, zero columns, and a float32 copy within the
    estimator's ``cache_memory``) is made by the first search and kept for
    the next ones, as :class:`~imgcls.neighbors.KNearestNeighbor` keeps its own.
    """

    rows: np.ndarray
    prepared: object

    def check_unchanged(self) -> None:
        """Nothing to check: the worker's copy cannot change."""


@dataclass
class FileShard:
    """A shard file opened on a worker: rows (memory-mapped), preparation, stat at open."""

    info: ShardInfo
    rows: np.ndarray
    mtime_ns: int
    prepared: object

    def check_unchanged(self) -> None:
        try:
            st = os.stat(self.info.path)
        except OSError as exc:
            raise DatasetError(f"shard {self.info.path}: cannot be read on this worker "
                               f"({exc.strerror or exc})") from exc
        if st.st_size != self.info.size or st.st_mtime_ns != self.mtime_ns:
            raise DatasetError(f"shard {self.info.path} changed after fit (size or modification "
                               "time differs); fit the model again")


def _digest(path: str) -> tuple[int, str]:
    from .._files import open_regular

    h = hashlib.sha256()
    size = 0
    with open_regular(path, error=DatasetError, what="shard") as f:
        while True:
            block = f.read(_HASH_BLOCK)
            if not block:
                break
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _map_rows(path: str) -> np.ndarray:
    """The shard's rows, memory-mapped read-only, as a 2-D array."""
    from ..datasets.features import map_npy

    rows = map_npy(path)
    if rows.ndim != 2:
        raise DatasetError(f"shard {path}: expected a 2-D array (rows, features), "
                           f"got shape {rows.shape}")
    if not rows.flags.c_contiguous:
        # a search reads rows: a Fortran-order file would be copied whole
        raise DatasetError(f"shard {path}: stored in Fortran order; save it in C order")
    return rows


def shard_info(path: str) -> ShardInfo:
    """Size, SHA-256, shape and dtype of a shard file, read on the worker."""
    path = os.fspath(path)
    size, sha = _digest(path)
    rows = _map_rows(path)
    return ShardInfo(path=path, size=size, sha256=sha, n_rows=int(rows.shape[0]),
                     n_features=int(rows.shape[1]), dtype=rows.dtype.name)


def hold_array(rows: np.ndarray, cache_bytes: int) -> ArrayShard:
    """Wrap a scattered shard, on the worker that holds it."""
    return ArrayShard(rows=rows, prepared=_prepared(rows, cache_bytes))


def open_shard(info: ShardInfo, cache_bytes: int = 0) -> FileShard:
    """Open a shard file recorded at ``fit``, refusing it if it changed since."""
    st = os.stat(info.path) if os.path.exists(info.path) else None
    size, sha = _digest(info.path)
    if size != info.size or sha != info.sha256:
        raise DatasetError(f"shard {info.path} changed after fit: now {size} bytes, "
                           f"SHA-256 {sha[:12]}..., recorded {info.size} bytes, "
                           f"{info.sha256[:12]}...; fit the model again")
    rows = _map_rows(info.path)
    return FileShard(info=info, rows=rows, mtime_ns=st.st_mtime_ns if st else 0,
                     prepared=_prepared(rows, cache_bytes))


def search_shards(Xq, k: int, metric: str, working_memory, total_rows: int, offsets, *shards):
    """This worker's top k of ``Xq`` over its resident shards, with global indices.

    Parameters
    ----------
    Xq : ndarray of shape (n_query, n_features)
    k : int
    metric : str
    working_memory : float or None
    total_rows : int
        Training rows over all shards (global indices are below it).
    offsets : list of int
        Global index of each shard's first row.
    *shards : ArrayShard or FileShard
        The shards (Dask passes the objects, which live on this worker).

    Returns
    -------
    dist : ndarray of shape (n_query, k_w), float64
    ind : ndarray of shape (n_query, k_w), int32 (int64 beyond 2^31 - 1 rows)
        k_w = min(k, rows on this worker), sorted by (distance, global index).
    """
    from ..neighbors.prepared import budget_bytes
    from ..neighbors.shards import search_shards as search_rows
    from .tasks import worker_threads

    for shard in shards:
        shard.check_unchanged()
    budget = budget_bytes(working_memory)
    dist, ind = search_rows(Xq, [s.rows for s in shards], offsets, int(k), metric,
                            working_memory, n_jobs=worker_threads(),
                            prepared=[s.prepared.prepare(metric, budget) if s.rows.shape[0]
                                      else None for s in shards])
    if int(total_rows) <= np.iinfo(np.int32).max:
        # 12 bytes a neighbour on the wire instead of 16; the client widens it
        ind = ind.astype(np.int32)
    return dist, ind
