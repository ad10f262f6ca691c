"""``features:DIR``: large feature sets (embeddings), memory-mapped, never copied.

Layout of ``DIR`` (one split is ``train`` or ``test``; both are required)::

    X_<split>.npy                 (n, d) float32, float16, float64 or uint8, C order
      or X_<split>-00000.npy,     shards of one split, numbered from 00000 without
         X_<split>-00001.npy ...  gaps (5 digits), same dtype and width, rows in order
    y_<split>.npy                 (n,) integer labels of every row (of all shards)
      or y_<split>-00000.npy ...  one label file per X shard, same numbering
    classes.txt                   optional: class names, UTF-8, one per line;
                                  line i (from 0) names label i

Other files are ignored.  Labels are class indices and are kept as they are:
with ``classes.txt`` they must lie in ``0..len(classes)-1``; without it the
classes are ``"0" .. str(max label)`` (at most :data:`MAX_UNNAMED_CLASSES`).

Each ``X`` file is opened with ``mmap_mode="r"``: ``Dataset.X_train`` is the
read-only ``numpy.memmap`` of ``X_train.npy`` itself, or, for shards, a
:class:`ShardedArray` over the shards' memmaps (a zero-copy single view across
files is impossible).  Nothing of ``X`` is copied into memory; labels (8 bytes
a row) are read into int64 arrays.

The files may come from strangers.  Each header is parsed by the bounded
parser of :mod:`imgcls.datasets.arrays` (no ``np.load``, no pickle); the
claimed shape times the item size must be exactly the bytes present, so a
truncated file is a :class:`FormatError` before anything is mapped.  Then,
before the data set is returned:

* widths and dtypes of the shards of a split agree, and ``X_train``/``X_test``
  have the same width;
* each label file has one label per row of its ``X``;
* labels are integers ``>= 0`` (and below ``len(classes)``);
* with ``check_finite=True`` (the default), every float value is finite: one
  blocked pass over the data (``first_nonfinite_row``, 4 MiB at a time: about
  one second per 2 GB from the page cache), naming the file and the first row
  holding NaN or an infinity (a float16 overflow is stored as infinity).

Every problem is a :class:`FormatError` (or, for a missing or non-regular
file, a :class:`DatasetError`) naming the file(s) and the cause.  A file that
another process truncates *after* it was mapped cannot be detected this way
(reading the missing pages raises SIGBUS); imgcls itself replaces files
atomically, never in place.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .._files import open_regular
from .._validation import first_nonfinite_row
from ..errors import ConfigError, DatasetError, FormatError
from .arrays import read_npy_header
from .base import Dataset, check_options

__all__ = ["ShardedArray", "load_features", "map_npy", "MAX_SHARDS", "MAX_UNNAMED_CLASSES",
           "FEATURE_DTYPES"]

#: dtypes an ``X`` file may have (little-endian as numpy writes them on x86/ARM).
FEATURE_DTYPES = ("float32", "float16", "float64", "uint8")
#: Most shards a split may have: every memory-mapped shard holds a duplicated
#: file descriptor (CPython's mmap keeps one), and the usual soft limit on open
#: files is 1024.
MAX_SHARDS = 512
#: Without ``classes.txt`` the classes are the label values ``0..max``; a larger
#: maximum is almost surely an id, not a class index, and would make a list of
#: millions of empty classes.  ImageNet-21k has 21,843 classes.
MAX_UNNAMED_CLASSES = 1 << 20
#: Largest ``classes.txt`` read (a name list of 21,843 classes is ~0.5 MB).
MAX_CLASSES_BYTES = 64 << 20
#: Rows of labels converted to int64 at a time (bounded temporaries).
_LABEL_BLOCK = 1 << 20
#: ``X_train.npy``, ``y_test-00012.npy``, ...
_NAME = re.compile(r"(X|y)_(train|test)(?:-([0-9]{5}))?\.npy")
_CLASSES_FILE = "classes.txt"


# ----------------------------------------------------------------- ShardedArray

class ShardedArray:
    """Read-only rows of several 2-D arrays of one dtype and width, as one (n, d) array.

    What a consumer may rely on (the contract the kNN search streams by):

    * ``shape``, ``dtype``, ``ndim`` (2), ``size``, ``nbytes``, ``len()``;
    * ``a[s:e]``: rows ``s..e-1`` as an ndarray: a *view* of one shard when the
      rows lie in one shard (no copy), else a new array of ``e - s`` rows;
    * ``a[idx]`` for an int index array (any shape, negatives allowed) or a
      boolean mask: the gathered rows as a new ndarray, ``idx.shape + (d,)``;
    * ``a[i]``: one row (a view); ``a[rows, cols]``: the rows, then ``cols``;
    * :meth:`iter_blocks`: ``(start, view)`` pairs covering every row in order,
      never crossing a shard, never copying: the way to stream the whole set;
    * ``np.asarray(a)`` concatenates every shard *in memory* (a full copy):
      for small sets and tests, never what a streaming consumer should call.

    Parameters
    ----------
    shards : sequence of ndarray of shape (n_i, d)
        At least one; C-contiguous rows (e.g. read-only ``numpy.memmap``).
    names : sequence of str, optional
        Where each shard came from, for messages.

    Raises
    ------
    ValueError
        No shards, or shards that are not 2-D or disagree in dtype or width.
    """

    ndim = 2

    def __init__(self, shards: Sequence[np.ndarray], names: Sequence[str] | None = None):
        shards = tuple(shards)
        names = tuple(names) if names is not None else tuple(f"shard {i}"
                                                            for i in range(len(shards)))
        if not shards:
            raise ValueError("shards: at least one array is needed")
        if len(names) != len(shards):
            raise ValueError(f"names: {len(names)} names for {len(shards)} shards")
        first = shards[0]
        for shard, name in zip(shards, names):
            if not isinstance(shard, np.ndarray) or shard.ndim != 2:
                raise ValueError(f"{name}: a shard must be a 2-D numpy array")
            if shard.dtype != first.dtype:
                raise ValueError(f"{name}: dtype {shard.dtype}, but {names[0]} has {first.dtype}")
            if shard.shape[1] != first.shape[1]:
                raise ValueError(f"{name}: {shard.shape[1]} values per row, but {names[0]} "
                                 f"has {first.shape[1]}")
        self.shards = shards
        self.names = names
        #: Row at which each shard starts, plus the total: ``offsets[-1] == len(self)``.
        self.offsets = np.cumsum([0] + [len(s) for s in shards], dtype=np.int64)
        self.dtype = first.dtype
        self.shape = (int(self.offsets[-1]), int(first.shape[1]))

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"ShardedArray(shape={self.shape}, dtype={self.dtype}, "
                f"shards={len(self.shards)})")

    def __array__(self, dtype=None, copy=None):
        if copy is False:  # numpy 2's np.asarray(a, copy=False): no view exists
            raise ValueError("a ShardedArray is not one block of memory; it cannot be "
                             "viewed as an ndarray without a copy")
        out = np.concatenate(self.shards, axis=0) if len(self.shards) > 1 \
            else np.array(self.shards[0])
        return out if dtype is None else out.astype(dtype, copy=False)

    def iter_blocks(self, max_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """Every row in order as ``(start, rows)`` views of at most ``max_rows`` rows.

        Blocks never cross a shard boundary, so none is copied.
        """
        if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) \
                or max_rows < 1:
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        for shard, offset in zip(self.shards, self.offsets[:-1]):
            for s in range(0, len(shard), int(max_rows)):
                yield int(offset) + s, shard[s:s + int(max_rows)]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if not key:
                return np.asarray(self)
            rows = self._rows(key[0])
            rest = key[1:]
            return rows[rest] if np.ndim(rows) == 1 else rows[(slice(None),) + rest]
        return self._rows(key)

    def _shard_of(self, i: int) -> int:
        return int(np.searchsorted(self.offsets, i, side="right")) - 1

    def _rows(self, key: Any) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"row {int(key)} is out of bounds for {n} rows")
            s = self._shard_of(i)
            return self.shards[s][i - int(self.offsets[s])]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self._gather(np.arange(start, stop, step, dtype=np.int64))
            if stop <= start:
                return np.empty((0, self.shape[1]), dtype=self.dtype)
            first, last = self._shard_of(start), self._shard_of(stop - 1)
            pieces = [self.shards[s][max(start - int(self.offsets[s]), 0):
                                     min(stop, int(self.offsets[s + 1])) - int(self.offsets[s])]
                      for s in range(first, last + 1)]
            return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=0)
        if key is Ellipsis:
            return np.asarray(self)
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean row mask must have shape ({n},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu" and idx.size:
            raise IndexError(f"rows must be selected by int, slice, int array or boolean "
                             f"mask, got {idx.dtype}")
        return self._gather(idx.astype(np.int64, copy=False))

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        n = self.shape[0]
        flat = idx.reshape(-1)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"a row index is out of bounds for {n} rows")
        flat = np.where(flat < 0, flat + n, flat)
        out = np.empty((flat.size, self.shape[1]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, flat, side="right") - 1
        for s in np.unique(which):
            mask = which == s
            out[mask] = self.shards[s][flat[mask] - self.offsets[s]]
        return out.reshape(idx.shape + (self.shape[1],))


# ----------------------------------------------------------------------- files

def map_npy(path: str | os.PathLike) -> np.ndarray:
    """One ``.npy`` file as a read-only ``numpy.memmap``, its header checked first.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ndarray
        A ``numpy.memmap`` (mode ``"r"``) of the header's shape, dtype and
        order, at the data's offset; an empty (non-mapped) array when the shape
        holds no values (``mmap`` cannot map zero bytes).

    Raises
    ------
    DatasetError
        Missing or not a regular file, or it cannot be mapped.
    FormatError
        A bad header (see :func:`imgcls.datasets.arrays.read_npy_header`),
        including data shorter or longer than the header says.
    """
    path = Path(path)
    where = str(path)
    with open_regular(path, error=DatasetError, what=".npy file") as f:
        try:
            size = os.fstat(f.fileno()).st_size
            shape, fortran, dtype, offset = read_npy_header(f, size, where)
        except OSError as exc:
            raise FormatError(f"{where}: cannot read ({exc.strerror or exc})") from None
        if math.prod(shape) == 0:
            return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        try:
            mapped = np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape,
                               order="F" if fortran else "C")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{where}: cannot memory-map ({exc})") from None
    # opened by descriptor (open_regular), so numpy does not know the name
    mapped.filename = os.path.abspath(path)
    return mapped


def _listing(folder: Path) -> dict[tuple[str, str], dict[int | None, Path]]:
    """``(X|y, split) -> {shard number or None: path}`` of the files the layout names."""
    found: dict[tuple[str, str], dict[int | None, Path]] = {}
    try:
        entries = sorted(os.listdir(folder))
    except NotADirectoryError:
        raise DatasetError(f"{folder}: not a folder; features:DIR needs a folder of .npy "
                           f"files (X_train.npy, y_train.npy, X_test.npy, y_test.npy)") from None
    except FileNotFoundError:
        raise DatasetError(f"{folder}: no such folder") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{str(folder)!r}: cannot list the folder "
                           f"({getattr(exc, 'strerror', None) or exc})") from None
    for entry in entries:
        m = _NAME.fullmatch(entry)
        if m:
            kind, split, number = m.groups()
            found.setdefault((kind, split), {})[None if number is None else int(number)] = \
                folder / entry
    return found


def _files(folder: Path, found: dict, kind: str, split: str) -> list[Path] | None:
    """The one file, or the shards in order, of ``kind`` in ``split``; None if absent."""
    files = found.get((kind, split))
    if not files:
        return None
    stem = f"{kind}_{split}"
    if None in files:
        if len(files) > 1:
            raise FormatError(f"{folder}: holds both {stem}.npy and shards {stem}-NNNNN.npy; "
                              f"keep one form")
        return [files[None]]
    numbers = sorted(files)
    if len(numbers) > MAX_SHARDS:
        raise FormatError(f"{folder}: {len(numbers)} shards of {stem} (at most {MAX_SHARDS}: "
                          f"each mapped shard holds an open file)")
    for expected, number in enumerate(numbers):
        if number != expected:
            raise FormatError(f"{folder}: shard {stem}-{expected:05d}.npy is missing (shards "
                              f"are numbered from 00000 without gaps; found "
                              f"{stem}-{number:05d}.npy)")
    return [files[k] for k in numbers]


def _map_features(paths: list[Path]) -> list[np.ndarray]:
    arrays = []
    for path in paths:
        X = map_npy(path)
        if X.ndim != 2:
            raise FormatError(f"{path}: features must have shape (n, d), got {X.shape}")
        if X.shape[1] == 0:
            raise FormatError(f"{path}: rows of 0 values")
        if X.dtype.name not in FEATURE_DTYPES or not X.dtype.isnative:
            raise FormatError(f"{path}: dtype {X.dtype.str} is not read; features:DIR maps "
                              f"{', '.join(FEATURE_DTYPES)} in native byte order as they are "
                              f"(convert with numpy.save(path, X.astype('<f4')))")
        if X.shape[0] > 1 and not X.flags.c_contiguous:
            raise FormatError(f"{path}: stored in Fortran (column) order; rows must be "
                              f"contiguous to be searched in blocks (save "
                              f"numpy.ascontiguousarray(X))")
        if arrays and X.shape[1] != arrays[0].shape[1]:
            raise FormatError(f"{path}: {X.shape[1]} features per row, but {paths[0]} has "
                              f"{arrays[0].shape[1]}")
        if arrays and X.dtype != arrays[0].dtype:
            raise FormatError(f"{path}: dtype {X.dtype}, but {paths[0]} has {arrays[0].dtype}; "
                              f"the shards of a split must have one dtype")
        arrays.append(X)
    return arrays


def _read_labels(path: Path, n_rows: int, x_where: str) -> np.ndarray:
    """Labels of one file as int64, checked: 1-D, integer, one per row, >= 0."""
    y = map_npy(path)
    if y.ndim != 1:
        raise FormatError(f"{path}: labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise FormatError(f"{path}: labels must be integers (class indices), got {y.dtype}")
    if len(y) != n_rows:
        raise FormatError(f"{path}: {len(y)} labels, but {x_where} has {n_rows} rows")
    out = np.empty(len(y), dtype=np.int64)
    for s in range(0, len(y), _LABEL_BLOCK):
        block = y[s:s + _LABEL_BLOCK]
        # compared as uint64: numpy < 2 compares uint64 with a Python int in
        # float64, where 2**63 - 1 and 2**63 + 5 are the same number
        top = np.uint64(np.iinfo(np.int64).max)
        if block.dtype.kind == "u" and block.dtype.itemsize == 8 \
                and block.size and block.max() > top:
            bad = s + int(np.argmax(block > top))
            raise FormatError(f"{path}: label {int(y[bad])} at row {bad} is too large")
        out[s:s + len(block)] = block
    if out.size and out.min() < 0:
        bad = int(np.argmax(out < 0))
        raise FormatError(f"{path}: label {int(out[bad])} at row {bad}; labels are class "
                          f"indices >= 0")
    return out


def _read_split(folder: Path, found: dict, split: str, check_finite: bool
                ) -> tuple[np.ndarray | ShardedArray, np.ndarray, list[Path], list[Path]]:
    x_paths = _files(folder, found, "X", split)
    y_paths = _files(folder, found, "y", split)
    if x_paths is None or y_paths is None:
        missing = f"X_{split}.npy" if x_paths is None else f"y_{split}.npy"
        raise FormatError(f"{folder}: no {missing} (nor shards {missing[:-4]}-00000.npy, ...); "
                          f"features:DIR needs X_train, y_train, X_test and y_test")
    shards = _map_features(x_paths)
    if len(y_paths) == 1:
        if len(x_paths) > 1 and _NAME.fullmatch(y_paths[0].name).group(3) is not None:
            raise FormatError(f"{y_paths[0]}: a label shard, but X_{split} has "
                              f"{len(x_paths)} shards; give one y_{split}-NNNNN.npy per X "
                              f"shard or one y_{split}.npy")
        total = sum(len(X) for X in shards)
        x_where = str(x_paths[0]) if len(x_paths) == 1 else \
            f"X_{split} ({len(x_paths)} shards {x_paths[0].name}..{x_paths[-1].name})"
        y = _read_labels(y_paths[0], total, x_where)
    else:
        if len(y_paths) != len(x_paths):
            raise FormatError(f"{folder}: {len(y_paths)} label shards y_{split}-NNNNN.npy for "
                              f"{len(x_paths)} X_{split} shards; give one per X shard or one "
                              f"y_{split}.npy")
        y = np.concatenate([_read_labels(yp, len(X), str(xp))
                            for yp, X, xp in zip(y_paths, shards, x_paths)])
    if check_finite:
        offset = 0
        for X, path in zip(shards, x_paths):
            row = first_nonfinite_row(X)
            if row is not None:
                where = f" (row {offset + row} of X_{split})" if len(shards) > 1 else ""
                raise FormatError(f"{path}: row {row}{where} holds NaN or infinite values (a "
                                  f"float16 overflow is stored as infinity)")
            offset += len(X)
    X = shards[0] if len(shards) == 1 else ShardedArray(shards, [str(p) for p in x_paths])
    return X, y, x_paths, y_paths


def _read_classes(path: Path) -> list[str]:
    with open_regular(path, error=DatasetError, what="class name file") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_CLASSES_BYTES:
            raise FormatError(f"{path}: {size} bytes, over {MAX_CLASSES_BYTES >> 20} MiB of "
                              f"class names")
        # read(n) allocates n bytes at once: ask only for what the file holds
        data = f.read(size)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line
    names = [line[:-1] if line.endswith("\r") else line for line in lines]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise FormatError(f"{path}: line {i + 1} is empty; one class name per line")
        if name in seen:
            raise FormatError(f"{path}: line {i + 1} repeats the class name {name[:80]!r} "
                              f"of line {seen[name] + 1}")
        seen[name] = i
    if not names:
        raise FormatError(f"{path}: no class names")
    return names


def load_features(path: str | os.PathLike, name: str | None = None, *, check_finite: bool = True,
                  **options: Any) -> Dataset:
    """Load a ``features:DIR`` folder, memory-mapped (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The folder.
    name : str, optional
        Recorded on the Dataset (default ``"features:<path>"``).
    check_finite : bool, default True
        Scan every float value for NaN/inf (one blocked read of the data).

    Returns
    -------
    Dataset
        ``X_train``/``X_test`` as read-only ``numpy.memmap`` (n, d), or
        :class:`ShardedArray` for shards; labels int64.

    Raises
    ------
    DatasetError
        A missing folder or file, a file that is not regular or cannot be mapped.
    FormatError
        Anything wrong with the content (see the module docstring); the message
        names the file(s) and the cause.
    ConfigError
        An unknown option.
    """
    check_options("features", options, set())
    if not isinstance(check_finite, (bool, np.bool_)):
        raise ConfigError(f"features: check_finite must be True or False, got {check_finite!r}")
    folder = Path(path).expanduser()
    found = _listing(folder)
    X_train, y_train, xtr, _ = _read_split(folder, found, "train", bool(check_finite))
    X_test, y_test, xte, _ = _read_split(folder, found, "test", bool(check_finite))
    if len(X_train) == 0:
        raise FormatError(f"{xtr[0]}: no training rows")
    if X_train.shape[1] != X_test.shape[1]:
        raise FormatError(f"{xte[0]}: {X_test.shape[1]} features per row, but {xtr[0]} has "
                          f"{X_train.shape[1]}")
    top = max(int(y_train.max()), int(y_test.max()) if y_test.size else 0)
    classes_path = folder / _CLASSES_FILE
    if os.path.lexists(classes_path):
        classes = _read_classes(classes_path)
        for y, split in ((y_train, "train"), (y_test, "test")):
            if y.size and int(y.max()) >= len(classes):
                bad = int(np.argmax(y >= len(classes)))
                raise FormatError(f"{folder}: y_{split} label {int(y[bad])} at row {bad}, but "
                                  f"{classes_path.name} names {len(classes)} classes "
                                  f"(labels 0..{len(classes) - 1})")
    else:
        if top >= MAX_UNNAMED_CLASSES:
            raise FormatError(f"{folder}: label {top} without a {_CLASSES_FILE}; labels are "
                              f"class indices 0..{MAX_UNNAMED_CLASSES - 1} (give "
                              f"{_CLASSES_FILE} to name the classes)")
        classes = [str(i) for i in range(top + 1)]
    layout = f"{len(xtr)} shards" if len(xtr) > 1 else "one file"
    checked = "checked" if check_finite else "not checked"
    return Dataset(name=name or f"features:{folder}", X_train=X_train, y_train=y_train,
                   X_test=X_test, y_test=y_test, classes=classes,
                   source=f"{folder} (memory-mapped .npy, X_train {X_train.dtype} in "
                          f"{layout}; finite values {checked})")
