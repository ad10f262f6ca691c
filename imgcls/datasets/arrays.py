"""``npz:PATH``: precomputed arrays (e.g. embeddings) from ``.npz`` or ``.npy`` files.

``PATH`` is a ``.npz`` file or a folder of ``.npy`` files, holding either
``X_train, y_train, X_test, y_test`` or ``X, y`` (then split with a seeded
stratified split), and optionally ``classes`` (1-D strings).  Files are always
read with ``allow_pickle=False``: an object array is a :class:`FormatError`.

``X`` may be ``uint8`` images (n, H, W[, C]) or features (n, d) of any real
dtype; float16 becomes float32, other integer/bool types become float64,
float32/float64 are kept.  Labels may be integers or strings; string labels are
mapped to their sorted unique values, which become ``classes``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import DatasetError, FormatError
from .base import Dataset, check_options, stratified_split

SPLIT_KEYS = ("X_train", "y_train", "X_test", "y_test")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FormatError(f"{path}: not a readable .npy array without pickle ({exc})") from None


def read_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of a ``.npz`` file or a folder of ``.npy`` files, and each one's file."""
    if path.is_dir():
        files = {p.stem: p for p in sorted(path.glob("*.npy")) if not p.name.startswith(".")}
        wanted = [k for k in (*SPLIT_KEYS, "X", "y", "classes") if k in files]
        if not wanted:
            raise FormatError(f"{path}: no X_train.npy/y_train.npy/X_test.npy/y_test.npy or "
                              f"X.npy/y.npy in this folder (found {sorted(files) or 'none'})")
        return ({k: _load_npy(files[k]) for k in wanted}, {k: str(files[k]) for k in wanted})
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or folder")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise FormatError(f"{path}: a single .npy array; npz:PATH needs a .npz file or "
                              f"a folder of .npy files with X/y arrays")
        with npz:
            data = {k: npz[k] for k in npz.files}
    except FormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FormatError(f"{path}: not a readable .npz archive without pickle ({exc})") from None
    return data, {k: f"{path}[{k}]" for k in data}


def _features(X: np.ndarray, where: str) -> np.ndarray:
    if X.ndim < 2:
        raise FormatError(f"{where}: X must have shape (n, d) or (n, H, W[, C]), got {X.shape}")
    if X.dtype == np.uint8:
        return X[..., None] if X.ndim == 3 else X
    if X.dtype.kind == "f":
        X = X.astype(np.float32) if X.dtype.itemsize < 4 else X
        if not np.isfinite(X).all():
            raise DatasetError(f"{where}: X holds NaN or infinite values")
        return X
    if X.dtype.kind in "iub":
        return X.astype(np.float64)
    raise FormatError(f"{where}: X has dtype {X.dtype}; expected uint8 images or real features")


def _labels(ys: list[np.ndarray], wheres: list[str], classes) -> tuple[list[np.ndarray], list[str]]:
    """Map label arrays to int64 indices into the class list (given or derived)."""
    for y, where in zip(ys, wheres):
        if y.ndim != 1:
            raise FormatError(f"{where}: labels must be 1-D, got shape {y.shape}")
        if y.dtype.kind not in "iuUS":
            raise FormatError(f"{where}: labels must be integers or strings, got {y.dtype}")
    strings = [y.dtype.kind in "US" for y in ys]
    if any(strings) and not all(strings):
        raise FormatError(f"{', '.join(wheres)}: labels mix strings and integers")
    if classes is not None:
        names = [str(c) for c in classes.tolist()]
        if len(set(names)) != len(names):
            raise FormatError(f"classes holds duplicate names: {names}")
        out = []
        for y, where in zip(ys, wheres):
            if strings[0]:
                lookup = {c: i for i, c in enumerate(names)}
                unknown = sorted({str(v) for v in np.unique(y)} - set(lookup))
                if unknown:
                    raise FormatError(f"{where}: labels {unknown[:5]} are not in classes")
                out.append(np.array([lookup[str(v)] for v in y.tolist()], dtype=np.int64))
            else:
                if y.size and (y.min() < 0 or y.max() >= len(names)):
                    raise FormatError(f"{where}: integer labels must lie in 0..{len(names) - 1} "
                                      f"(len(classes)), got {int(y.min())}..{int(y.max())}")
                out.append(y.astype(np.int64))
        return out, names
    values = np.unique(np.concatenate([y.astype(str) if strings[0] else y.astype(np.int64)
                                       for y in ys]))
    out = [np.searchsorted(values, y.astype(str) if strings[0] else y.astype(np.int64))
           .astype(np.int64) for y in ys]
    return out, [str(v) for v in values.tolist()]


def load_arrays(path: str | Path, name: str | None = None, *, test_size: float = 0.2,
                seed: int = 0, **options) -> Dataset:
    """Load precomputed arrays (see the module docstring).

    Parameters
    ----------
    path : str or Path
        A ``.npz`` file or a folder of ``.npy`` files.
    name : str, optional
        Recorded on the Dataset (default ``"npz:<path>"``).
    test_size : float, default 0.2
        Test fraction per class when only ``X, y`` are given.
    seed : int, default 0
        Seed of that stratified split.

    Returns
    -------
    Dataset
        ``X_*`` as uint8 images (n, H, W, C) or features (n, d); int64 labels.
    """
    check_options("npz", options, set())
    path = Path(path).expanduser()
    arrays, where = read_arrays(path)
    classes = arrays.get("classes")
    if classes is not None and (classes.ndim != 1 or classes.dtype.kind not in "US"):
        raise FormatError(f"{where['classes']}: classes must be a 1-D array of strings")
    if all(k in arrays for k in SPLIT_KEYS):
        Xs = [_features(arrays["X_train"], where["X_train"]),
              _features(arrays["X_test"], where["X_test"])]
        ys, names = _labels([arrays["y_train"], arrays["y_test"]],
                            [where["y_train"], where["y_test"]], classes)
        if Xs[0].shape[1:] != Xs[1].shape[1:]:
            raise FormatError(f"{path}: X_train samples have shape {Xs[0].shape[1:]} but X_test "
                              f"samples {Xs[1].shape[1:]}")
        if Xs[0].dtype != Xs[1].dtype:
            Xs = [X.astype(np.result_type(*Xs)) for X in Xs]
        how = "given train/test split"
    elif "X" in arrays and "y" in arrays:
        X = _features(arrays["X"], where["X"])
        (y,), names = _labels([arrays["y"]], [where["y"]], classes)
        if len(X) != len(y):
            raise FormatError(f"{where['X']}: {len(X)} samples but {where['y']} has {len(y)} labels")
        tr, te = stratified_split(y, test_size, seed, str(path))
        Xs, ys = [X[tr], X[te]], [y[tr], y[te]]
        how = f"stratified split test_size={test_size}, seed={seed}"
    else:
        raise FormatError(f"{path}: expected arrays X_train, y_train, X_test, y_test (or X, y); "
                          f"found {sorted(arrays)}")
    for X, y, split in zip(Xs, ys, ("train", "test")):
        if len(X) != len(y):
            raise FormatError(f"{where[f'X_{split}']}: {len(X)} samples but "
                              f"{where[f'y_{split}']} has {len(y)} labels")
    return Dataset(name=name or f"npz:{path}", X_train=Xs[0], y_train=ys[0], X_test=Xs[1],
                   y_test=ys[1], classes=names,
                   source=f"{path} (arrays, allow_pickle=False; {how})")

