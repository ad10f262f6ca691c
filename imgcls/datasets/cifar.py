"""``cifar10`` and ``cifar100``: the binary release, or the python release read safely.

Binary record: 1 label byte (CIFAR-100: coarse then fine, 2 bytes), then 3072
pixel bytes, channel-major (1024 red, 1024 green, 1024 blue, each 32x32 row
major), decoded with one ``np.frombuffer`` + reshape + transpose per file.

Where the files are looked for in ``root`` (or the cache dir), first found wins:

1. the extracted binary folder (``cifar-10-batches-bin/``, ``cifar-100-binary/``);
2. the extracted python folder (``cifar-10-batches-py/``, ``cifar-100-python/``);
3. the binary archive (``cifar-10-binary.tar.gz`` ...), SHA-256 checked, read in memory;
4. the python archive (``cifar-10-python.tar.gz`` ...), SHA-256 checked, read in memory;
5. with ``download=True``: the binary archive is downloaded, checked and safely
   extracted into the folder (then case 1 applies next time).

Python-release batches are decoded by :mod:`.restricted_pickle`, never by
the standard unpickler, and must hold exactly the expected arrays/lists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DatasetError, FormatError
from . import resources
from .archive import read_members, safe_extract
from .base import Dataset, check_options
from .download import ensure_files, read_bounded, verify_file
from .locations import resolve_root
from .restricted_pickle import load as load_pickle

PIXELS = 32 * 32 * 3

# Per data set: binary folder and files, python folder and files.
LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "bin_dir": "cifar-10-batches-bin",
        "bin_train": [f"data_batch_{i}.bin" for i in range(1, 6)], "bin_test": ["test_batch.bin"],
        "bin_meta": {"fine": "batches.meta.txt"},
        "py_dir": "cifar-10-batches-py",
        "py_train": [f"data_batch_{i}" for i in range(1, 6)], "py_test": ["test_batch"],
        "py_meta": "batches.meta",
        "label_bytes": 1, "n_classes": {"fine": 10},
        "max_records": {"train": 10000, "test": 10000},
    },
    "cifar100": {
        "bin_dir": "cifar-100-binary",
        "bin_train": ["train.bin"], "bin_test": ["test.bin"],
        "bin_meta": {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"},
        "py_dir": "cifar-100-python",
        "py_train": ["train"], "py_test": ["test"], "py_meta": "meta",
        "label_bytes": 2, "n_classes": {"fine": 100, "coarse": 20},
        "max_records": {"train": 50000, "test": 10000},
    },
}
# ``max_records``: the images one file of the official release holds (CIFAR-10:
# five training batches and one test batch of 10000; CIFAR-100: one training
# file of 50000 and one test file of 10000).  No file is read past what that
# many records take (see ``_file_limit``).
#: Most bytes per image of a python-release batch: its 3072 pixels, which a
#: Python 3 protocol-2 pickle writes as UTF-8 text (up to 2 bytes each), plus a
#: label or two, a file name of about 30 characters and their opcodes (~50 bytes,
#: rounded up to 256).
PY_BYTES_PER_RECORD = 2 * PIXELS + 256
#: Most bytes of a class-name file (``batches.meta.txt``, ``meta``): 100 names.
META_MAX_BYTES = 1 << 16
_BATCH_KEYS = {"batch_label", "labels", "data", "filenames", "fine_labels", "coarse_labels"}
_META_KEYS = {"label_names", "num_cases_per_batch", "num_vis", "fine_label_names",
              "coarse_label_names"}


def parse_binary(data: bytes, where: str | Path, label_bytes: int, label_index: int,
                 n_classes: int, max_records: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Decode a binary batch into images (n, 32, 32, 3) uint8 and labels (n,) int64.

    Parameters
    ----------
    data : bytes
        The file's content: records of ``label_bytes`` label bytes then 3072 pixels.
    where : str or Path
        Named in error messages.
    label_bytes : {1, 2}
        CIFAR-10: 1; CIFAR-100: 2 (coarse, fine).
    label_index : int
        Which label byte to use (CIFAR-100: 0 coarse, 1 fine).
    n_classes : int
        Labels must be in ``0..n_classes - 1``.
    max_records : int, optional
        Most records the file may hold (the official file's count).

    Raises
    ------
    ConfigError
        ``label_bytes``/``label_index``/``n_classes`` themselves are invalid.
    FormatError
        The length is not a positive whole number of records or is over
        ``max_records`` (checked before anything is allocated), or a label is
        out of range.
    """
    if label_bytes not in (1, 2) or not 0 <= label_index < label_bytes or n_classes < 1:
        raise ConfigError(f"parse_binary: label_bytes must be 1 or 2 and 0 <= label_index < "
                          f"label_bytes, n_classes >= 1; got {label_bytes}, {label_index}, "
                          f"{n_classes}")
    record = label_bytes + PIXELS
    if len(data) == 0 or len(data) % record:
        raise FormatError(f"{where}: CIFAR batch of the wrong length: {len(data)} bytes is not "
                          f"a positive multiple of the {record}-byte record "
                          f"({label_bytes} label byte(s) + {PIXELS} pixels)")
    if max_records is not None and len(data) // record > max_records:
        raise FormatError(f"{where}: {len(data) // record} records, more than the "
                          f"{max_records} of the official file")
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    labels = rows[:, label_index].astype(np.int64)
    if labels.max() >= n_classes:
        raise FormatError(f"{where}: label {int(labels.max())} is outside 0..{n_classes - 1}")
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def parse_names(data: bytes, where: str | Path, n_classes: int) -> list[str]:
    """Class names from a ``*.txt`` meta file (one per line; blank lines ignored)."""
    try:
        names = [s.strip() for s in data.decode("utf-8").splitlines() if s.strip()]
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where}: class-name file is not text ({exc})") from None
    if len(names) != n_classes:
        raise FormatError(f"{where}: {len(names)} class names, expected {n_classes}")
    return names


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _keys_as_str(obj: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected a dict, found a {type(obj).__name__}")
    out = {_text(k) if isinstance(k, (str, bytes)) else k: v for k, v in obj.items()}
    unexpected = sorted(map(str, set(out) - allowed))
    if unexpected:
        raise FormatError(f"{where}: unexpected entries {unexpected}; a CIFAR file holds only "
                          f"{sorted(allowed)}")
    return out


def _str_list(value: Any, where: str, key: str) -> list[str]:
    if not (isinstance(value, list) and all(isinstance(v, (str, bytes)) for v in value)):
        raise FormatError(f"{where}: {key!r} must be a list of strings")
    return [_text(v) for v in value]


def parse_python_batch(data: bytes, where: str | Path, label_key: str, n_classes: int,
                       max_records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode a python-release batch with the restricted reader and check its structure.

    Parameters
    ----------
    data : bytes
        The file's content (a pickle; never unpickled by Python's own unpickler).
    where : str or Path
        Named in error messages.
    label_key : {"labels", "fine_labels", "coarse_labels"}
        The entry holding the labels used.
    n_classes : int
        Labels must be in ``0..n_classes - 1``.
    max_records : int, optional
        Most images the file may hold (the official file's count).

    Returns
    -------
    images : ndarray (n, 32, 32, 3) uint8
    labels : ndarray (n,) int64

    Raises
    ------
    FormatError
        Anything the restricted unpickler (:mod:`.restricted_pickle`) refuses, or
        content that is not a CIFAR batch (missing/extra entries, wrong types, counts that disagree
        or exceed ``max_records``, labels out of range).  No other exception
        escapes for any ``data``.
    """
    where = str(where)
    batch = _keys_as_str(load_pickle(data, where), where, _BATCH_KEYS)
    X, y = batch.get("data"), batch.get(label_key)
    if not (isinstance(X, np.ndarray) and X.dtype == np.uint8 and X.ndim == 2
            and X.shape[1] == PIXELS):
        got = (f"{X.dtype} array {X.shape[:4]}" if isinstance(X, np.ndarray)
               else type(X).__name__)
        raise FormatError(f"{where}: 'data' must be a uint8 array (n, {PIXELS}), found {got}")
    if max_records is not None and len(X) > max_records:
        raise FormatError(f"{where}: {len(X)} images, more than the {max_records} of the "
                          f"official file")
    if not (isinstance(y, list) and all(type(v) is int for v in y)):
        raise FormatError(f"{where}: {label_key!r} must be a list of ints")
    for key in ("labels", "fine_labels", "coarse_labels"):
        value = batch.get(key)
        if value is not None and not (isinstance(value, list) and all(type(v) is int for v in value)):
            raise FormatError(f"{where}: {key!r} must be a list of ints")
    if "filenames" in batch:
        _str_list(batch["filenames"], where, "filenames")
    if "batch_label" in batch and not isinstance(batch["batch_label"], (str, bytes)):
        raise FormatError(f"{where}: 'batch_label' must be a string")
    if len(y) != len(X):
        raise FormatError(f"{where}: {len(X)} images but {len(y)} {label_key}")
    # Checked as Python ints first: a label of 2**70 must not reach int64.
    if not all(0 <= v < n_classes for v in y):
        raise FormatError(f"{where}: {label_key} outside 0..{n_classes - 1}")
    labels = np.array(y, dtype=np.int64)
    return np.ascontiguousarray(X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def parse_python_meta(data: bytes, where: str | Path, key: str, n_classes: int) -> list[str]:
    """Class names from a python-release meta file (``batches.meta``, ``meta``).

    Raises :class:`FormatError` for anything but a dict of name lists and ints
    holding ``n_classes`` names under ``key``.
    """
    where = str(where)
    meta = _keys_as_str(load_pickle(data, where), where, _META_KEYS)
    if key not in meta:
        raise FormatError(f"{where}: no {key!r} entry")
    for k, v in meta.items():
        if k.endswith("names"):
            _str_list(v, where, k)
        elif type(v) is not int:
            raise FormatError(f"{where}: {k!r} must be an int")
    names = _str_list(meta[key], where, key)
    if len(names) != n_classes:
        raise FormatError(f"{where}: {len(names)} names in {key!r}, expected {n_classes}")
    return names


def _decode(name: str, release: str, blobs: dict[str, bytes], prefix: str, label: str,
            ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]],
                       list[str]]:
    lay = LAYOUT[name]
    n_classes = lay["n_classes"][label]
    splits = []
    for part in ("train", "test"):
        parsed = []
        for f in lay[f"{'bin' if release == 'binary' else 'py'}_{part}"]:
            where = prefix + f
            if release == "binary":
                # CIFAR-100 records: coarse byte first, then fine.
                index = 1 if (lay["label_bytes"] == 2 and label == "fine") else 0
                parsed.append(parse_binary(blobs[where], where, lay["label_bytes"], index,
                                           n_classes, lay["max_records"][part]))
            else:
                key = "labels" if name == "cifar10" else f"{label}_labels"
                parsed.append(parse_python_batch(blobs[where], where, key, n_classes,
                                                 lay["max_records"][part]))
        splits.append(parsed)
    if release == "binary":
        meta = prefix + lay["bin_meta"][label]
        classes = parse_names(blobs[meta], meta, n_classes)
    else:
        meta = prefix + lay["py_meta"]
        key = "label_names" if name == "cifar10" else f"{label}_label_names"
        classes = parse_python_meta(blobs[meta], meta, key, n_classes)
    return splits[0], splits[1], classes


def _file_limit(name: str, release: str, filename: str) -> tuple[int, str]:
    """The most bytes ``filename`` of the official release may have, and why."""
    lay = LAYOUT[name]
    for part in ("train", "test"):
        if filename in lay["bin_train" if part == "train" else "bin_test"]:
            n = lay["max_records"][part]
            record = lay["label_bytes"] + PIXELS
            return n * record, f"{n} records of {record} bytes"
        if filename in lay["py_train" if part == "train" else "py_test"]:
            n = lay["max_records"][part]
            return (n * PY_BYTES_PER_RECORD,
                    f"{n} images with their labels and names")
    return META_MAX_BYTES, "a class-name file"


def _wanted(name: str, release: str, label: str) -> list[str]:
    lay = LAYOUT[name]
    if release == "binary":
        return lay["bin_train"] + lay["bin_test"] + [lay["bin_meta"][label]]
    return lay["py_train"] + lay["py_test"] + [lay["py_meta"]]


def load_cifar(name: str, root=None, download: bool = False, *, label: str = "fine",
               verify: bool = True, mirrors=None, progress=None, **options) -> Dataset:
    """Load ``cifar10`` or ``cifar100`` (see the module docstring for where files are found).

    Parameters
    ----------
    name : {"cifar10", "cifar100"}
    root : str or Path, optional
        Folder holding an extracted release or an archive; default: the cache dir.
    download : bool, default False
        Download (and extract) the binary release when nothing is found.
    label : {"fine", "coarse"}, default "fine"
        CIFAR-100's 100 fine or 20 coarse classes (CIFAR-10: "fine" only).
    verify : bool, default True
        Check an archive's SHA-256 before reading it.
    mirrors : list of str, optional
        Download base URLs (default ``resources.MIRRORS[name]``).
    progress : bool, optional
        Download progress bar.

    Returns
    -------
    Dataset
        ``X_train`` (50000, 32, 32, 3) uint8, ``X_test`` (10000, 32, 32, 3) uint8.
    """
    check_options(name, options, set())
    lay = LAYOUT[name]
    if label not in lay["n_classes"]:
        raise ConfigError(f"{name}: label must be one of {sorted(lay['n_classes'])}, got {label!r}")
    folder = resolve_root(name, root)
    bin_dir, py_dir = folder / lay["bin_dir"], folder / lay["py_dir"]
    archives = {r.filename: r for r in resources.FILES[name] + resources.ALTERNATIVE_FILES[name]}
    bin_tar, py_tar = resources.FILES[name][0], resources.ALTERNATIVE_FILES[name][0]

    if not bin_dir.is_dir() and not py_dir.is_dir() and not any(
            (folder / a).is_file() for a in archives):
        if not download:
            raise DatasetError(f"{name}: {folder} holds neither {lay['bin_dir']}/, "
                               f"{lay['py_dir']}/ nor {' / '.join(archives)}; pass "
                               f"download=True (or run `imgcls datasets download {name}`)")
        ensure_files([bin_tar], resources.MIRRORS[name] if mirrors is None else mirrors, folder,
                     progress=progress)
        safe_extract(folder / bin_tar.filename, folder)

    if bin_dir.is_dir() or py_dir.is_dir():
        release, directory = ("binary", bin_dir) if bin_dir.is_dir() else ("python", py_dir)
        files = _wanted(name, release, label)
        # lexists: a FIFO, device or folder under a batch's name is not "missing"
        # but refused by read_bounded, which never blocks on it.
        missing = [f for f in files if not os.path.lexists(directory / f)]
        if missing:
            raise DatasetError(f"{directory}: missing CIFAR file(s) {', '.join(missing)}")
        prefix = f"{directory}/"
        blobs = {prefix + f: read_bounded(directory / f, *_file_limit(name, release, f),
                                          what="CIFAR file") for f in files}
        how = f"extracted {release} release in {directory}"
    else:
        remote = bin_tar if (folder / bin_tar.filename).is_file() else py_tar
        release = "binary" if remote is bin_tar else "python"
        archive = folder / remote.filename
        if verify:
            verify_file(archive, remote.sha256)
        inner = lay["bin_dir"] if release == "binary" else lay["py_dir"]
        wanted = _wanted(name, release, label)
        members = [f"{inner}/{f}" for f in wanted]
        # each member is held to what its format allows, checked on its tar
        # header before any of its bytes are read
        got = read_members(archive, members, max_sizes={
            f"{inner}/{f}": _file_limit(name, release, f)[0] for f in wanted})
        missing = [m for m in members if m not in got]
        if missing:
            raise FormatError(f"{archive}: archive lacks {', '.join(missing)}")
        prefix = f"{archive}:{inner}/"
        blobs = {f"{archive}:{m}": v for m, v in got.items()}
        how = (f"{release} release {archive} "
               f"({'SHA-256 verified' if verify else 'not verified (verify=False)'})")
    train, test, classes = _decode(name, release, blobs, prefix, label)
    X_tr, y_tr = (np.concatenate([p[i] for p in train]) for i in (0, 1))
    X_te, y_te = (np.concatenate([p[i] for p in test]) for i in (0, 1))
    return Dataset(name=name, X_train=X_tr, y_train=y_tr, X_test=X_te, y_test=y_te,
                   classes=classes, source=f"{how}; {label} labels")


def load_cifar10(root=None, download: bool = False, **options) -> Dataset:
    return load_cifar("cifar10", root, download, **options)


def load_cifar100(root=None, download: bool = False, **options) -> Dataset:
    return load_cifar("cifar100", root, download, **options)
