"""``mnist`` and ``fashion-mnist``: the four official IDX files, gzipped or not.

Files are looked for in ``root`` (or the cache dir) under their official names,
``train-images-idx3-ubyte.gz`` etc., or without ``.gz`` (also the common
``train-images.idx3-ubyte`` spelling of unpacked copies).  Each file's SHA-256
is checked before it is parsed: a ``.gz`` is accepted when its bytes are the
mirrors' bytes or when its decompressed content is the official content (a
recompressed copy); an uncompressed file is checked against the official
content's SHA-256.
"""

from __future__ import annotations

import hashlib
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ChecksumError, DatasetError
from . import resources
from .base import Dataset, check_options
from .download import RemoteFile, ensure_files, read_bounded
from .idx import (GZIP_MAGIC, decode_maybe_gzip, gunzip_exact, gunzip_sha256, parse_idx,
                  read_maybe_gzip)
from .locations import find_file, resolve_root

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
CLASSES = {"mnist": [str(i) for i in range(10)], "fashion-mnist": FASHION_CLASSES}
# (images, labels) file stems per split
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _gzip_bound(size: int) -> int:
    """The most bytes a gzip file of ``size`` content bytes takes: deflate's stored
    blocks add 5 bytes per 64 KiB (rounded up here to 1 per 1000), plus 64 KiB for
    the gzip header's optional name, comment and extra fields."""
    return size + size // 1000 + (1 << 16)


def _read_verified(path: Path, remote: RemoteFile, verify: bool) -> tuple[bytes, str]:
    """Content of ``path`` (decompressed) after the SHA-256 check; returns (content, how).

    Memory is bounded by the official sizes, with or without ``verify`` (which
    skips only the checksum): the file is read only up to the largest gzip of
    the official content, and decompressed only up to the official content's
    size (``remote.raw_size``; a smaller subset loads).  The content of a gzip
    file is never held before its checksum is known to be good: unless the
    served bytes match, it is first only hashed, piece by piece, and then, once
    it matches, decompressed into one buffer of exactly the official size.
    """
    official = remote.filename[:-3]
    bound, why = remote.raw_size, f"the size of the official {official}"
    if not verify:
        return read_maybe_gzip(path, bound, why)[0], "not verified (verify=False)"
    data = read_bounded(path, None if bound is None else _gzip_bound(bound),
                        f"the most any copy of the official {official} ({bound} bytes) takes",
                        what="IDX file")
    if hashlib.sha256(data).hexdigest() == remote.sha256:
        return _decompress_good(data, path, bound, why), "SHA-256 verified"
    if remote.raw_sha256 is None:
        if data[:2] == GZIP_MAGIC:
            raise ChecksumError(f"{path}: SHA-256 differs from the official "
                                f"{remote.filename} ({remote.sha256}) — corrupt or not the "
                                f"official release; delete it, or pass verify=False")
        content, _ = decode_maybe_gzip(data, path, bound, why)
        warnings.warn(f"{path}: no official SHA-256 of the uncompressed file is known; "
                      f"loaded without a checksum check", stacklevel=4)
        return content, "not verified (no official checksum for this form)"
    compressed, marks = data[:2] == GZIP_MAGIC, []
    if compressed:
        got, _ = gunzip_sha256(data, path, bound, why, marks)
    else:
        content, _ = decode_maybe_gzip(data, path, bound, why)  # a plain file: it is the input
        got = hashlib.sha256(content).hexdigest()
    if got != remote.raw_sha256:
        raise ChecksumError(f"{path}: SHA-256 of the {'decompressed ' if compressed else ''}"
                            f"content is {got}, expected {remote.raw_sha256} (official "
                            f"{remote.filename[:-3]}) — the file is corrupt or not the "
                            f"official release; delete it, or pass verify=False")
    if compressed:
        content = _decompress_good(data, path, bound, why, marks)
    return content, "SHA-256 verified (content)"


def _decompress_good(data: bytes, path: Path, size: int | None, why: str, marks=None):
    """The content of ``data``, whose checksum matched: into one buffer of the
    official ``size`` when it is gzip and the size is known (in parallel parts
    with the ``marks`` of the checking pass)."""
    if data[:2] == GZIP_MAGIC and size is not None:
        return gunzip_exact(data, path, size, why, marks)
    return decode_maybe_gzip(data, path, size, why)[0]


def load_idx_dataset(name: str, root=None, download: bool = False, *, verify: bool = True,
                     mirrors=None, progress=None, **options) -> Dataset:
    """Load ``mnist`` or ``fashion-mnist`` from IDX files.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    root : str or Path, optional
        Folder holding the four files; default: the cache dir's ``<name>/``.
    download : bool, default False
        Fetch missing files (into ``root`` or the cache dir).
    verify : bool, default True
        Check each file's SHA-256 against the official release before parsing.
        Either way no file is read or decompressed past the official size.
    mirrors : list of str, optional
        Base URLs to download from (default ``resources.MIRRORS[name]``).
    progress : bool, optional
        Download progress bar (default: when stderr is a terminal).

    Returns
    -------
    Dataset
        ``X_train`` (60000, 28, 28, 1) uint8, ``X_test`` (10000, 28, 28, 1) uint8.
    """
    check_options(name, options, set())
    folder = resolve_root(name, root)
    remotes = {r.filename: r for r in resources.FILES[name]}
    missing = [stem for pair in SPLITS.values() for stem in pair if find_file(folder, stem) is None]
    if missing:
        if not download:
            raise DatasetError(f"{name}: {folder} lacks {', '.join(s + '[.gz]' for s in missing)}; "
                               f"pass download=True (or run `imgcls datasets download {name}`)")
        ensure_files([remotes[s + ".gz"] for s in missing],
                     resources.MIRRORS[name] if mirrors is None else mirrors, folder,
                     progress=progress)

    def read(stem: str) -> tuple[np.ndarray, str]:
        path = find_file(folder, stem)
        content, how = _read_verified(path, remotes[stem + ".gz"], verify)
        return parse_idx(content, path, ndim=3 if "images" in stem else 1), how

    # One thread per file: zlib and hashlib release the GIL, so the test files
    # are decompressed and hashed while the large training file is.  Each read
    # is bounded by its official size (``_read_verified``), and the parsed arrays
    # are views of the decompressed content, so together they hold at most the
    # gzip files and the content: about 11 + 55 MB.
    stems = [stem for pair in SPLITS.values() for stem in pair]
    with ThreadPoolExecutor(max_workers=len(stems)) as pool:
        results = dict(zip(stems, pool.map(read, stems)))
    arrays = {stem: array for stem, (array, _) in results.items()}
    checks = {how for _, how in results.values()}
    out = {}
    for split, (img_stem, lab_stem) in SPLITS.items():
        X, y = arrays[img_stem], arrays[lab_stem]
        if X.dtype != np.uint8 or y.dtype != np.uint8:
            raise DatasetError(f"{name}: {folder / img_stem}: expected unsigned-byte IDX data, "
                               f"got {X.dtype} images and {y.dtype} labels")
        if len(X) != len(y):
            raise DatasetError(f"{name}: {find_file(folder, img_stem)} holds {len(X)} images "
                               f"but {find_file(folder, lab_stem)} holds {len(y)} labels")
        if y.size and y.max() >= 10:
            raise DatasetError(f"{name}: {find_file(folder, lab_stem)}: label {int(y.max())} "
                               f"is outside 0..9")
        out[split] = (X[..., None], y.astype(np.int64))
    return Dataset(name=name, X_train=out["train"][0], y_train=out["train"][1],
                   X_test=out["test"][0], y_test=out["test"][1], classes=list(CLASSES[name]),
                   source=f"{folder} (IDX; {', '.join(sorted(checks))})")


def load_mnist(root=None, download: bool = False, **options) -> Dataset:
    return load_idx_dataset("mnist", root, download, **options)


def load_fashion_mnist(root=None, download: bool = False, **options) -> Dataset:
    return load_idx_dataset("fashion-mnist", root, download, **options)
