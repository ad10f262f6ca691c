"""``npz:PATH``: precomputed arrays (e.g. embeddings) from ``.npz`` or ``.npy`` files.

``PATH`` is a ``.npz`` file or a folder of ``.npy`` files, holding either
``X_train, y_train, X_test, y_test`` or ``X, y`` (then split with a seeded
stratified split), and optionally ``classes`` (1-D strings).

``X`` may be ``uint8`` images (n, H, W[, C]) or features (n, d) of any real
dtype; float16 becomes float32, other integer/bool types become float64,
float32/float64 are kept.  Labels may be integers or strings; string labels are
mapped to their sorted unique values, which become ``classes``.

The files may come from strangers, so the reader never lets numpy trust a
header: it parses each ``.npy`` header itself (format versions 1.0 and 2.0),
accepts only numeric and string dtypes (never object arrays: nothing is ever
unpickled), and checks that the claimed shape times the item size is exactly
the number of bytes present before it allocates anything.  Zip members must be
stored or deflated, unencrypted, inside the file, and may not inflate more
than ``max_inflate_ratio`` times (a zip bomb is refused from its directory
entry, before decompression).  Only regular files are opened (a FIFO is
refused at once).  Every problem is a :class:`FormatError` (or, for a missing
or non-regular file, a :class:`DatasetError`) naming the file, the array and
the cause.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from .._files import open_regular
from ..errors import ConfigError, DatasetError, FormatError
from .base import Dataset, check_options, stratified_split

__all__ = ["read_arrays", "load_arrays", "read_npy_header", "MAX_INFLATE_RATIO"]

SPLIT_KEYS = ("X_train", "y_train", "X_test", "y_test")
#: Every array name the loader reads; other members of an archive are never decompressed.
KEYS = (*SPLIT_KEYS, "X", "y", "classes")

#: ``numpy.lib.format.MAGIC_PREFIX``, the first bytes of every .npy file.
NPY_MAGIC = b"\x93NUMPY"
#: numpy's own cap on a .npy header (``numpy.lib.format._MAX_HEADER_SIZE``);
#: headers numpy writes are a few hundred bytes.
MAX_HEADER_SIZE = 10_000
#: Bytes before the header text: magic (6) + version (2) + header length
#: (2 bytes in format 1.0, 4 bytes in 2.0).
PREFIX_BYTES = {(1, 0): 10, (2, 0): 12}
#: The most dimensions numpy 1.x arrays may have (``NPY_MAXDIMS``; numpy 2 allows 64).
MAX_NDIM = 32
#: dtype kinds an array may have: bool, signed/unsigned int, float, unicode and
#: byte strings.  Object ("O"), structured/void ("V"), complex, datetime and
#: timedelta arrays are refused.
ALLOWED_KINDS = frozenset("biufUS")
#: Largest inflated/compressed size ratio of a deflated member; the default
#: minimum inflate ratio of 0.01 of Apache POI's ``ZipSecureFile``.  Random
#: float features compress about 1.1:1, uint8 images under 10:1.
MAX_INFLATE_RATIO = 100
#: Members up to this size (1 MiB) are not ratio-checked: small arrays of zeros
#: compress far beyond 100:1 and cost nothing to inflate.
RATIO_FREE_BYTES = 1 << 20
#: Bytes read per call when filling an array, so no second full-size buffer exists.
READ_CHUNK = 1 << 20
#: The largest Unicode code point; UTF-16 surrogates (U+D800..U+DFFF) are not
#: characters either.  numpy raises SystemError converting such "U" data to str.
MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
#: What zipfile, zlib and numpy's header parser raise on malformed input.
_PARSE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, OSError,
                 EOFError, ValueError, TypeError, KeyError, IndexError, OverflowError,
                 SyntaxError, RecursionError, MemoryError, NotImplementedError, RuntimeError,
                 UnicodeError)


class _Counting:
    """A read-only stream that counts the bytes read through it (the header length)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.n_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.n_read += len(data)
        return data


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.hasobject:
        raise FormatError(f"{where}: an object array, which cannot be read without pickle "
                          f"(allow_pickle is off); only numeric and string arrays are read")
    if dtype.names is not None or dtype.subdtype is not None:
        raise FormatError(f"{where}: structured dtype {dtype}; only plain numeric and string "
                          f"arrays are read")
    if dtype.kind not in ALLOWED_KINDS:
        raise FormatError(f"{where}: dtype {dtype} is not allowed; only bool, integer, float "
                          f"and string arrays are read")
    if dtype.itemsize == 0:
        raise FormatError(f"{where}: dtype {dtype} has zero-size items")


def _check_text(array: np.ndarray, where: str) -> None:
    """Refuse "U" data holding values that are not Unicode characters."""
    if array.dtype.kind != "U" or array.size == 0:
        return
    codes = array.reshape(-1).view(np.dtype(np.uint32).newbyteorder(array.dtype.byteorder))
    bad = (codes > MAX_CODE_POINT) | ((codes >= SURROGATES[0]) & (codes <= SURROGATES[1]))
    if bad.any():
        raise FormatError(f"{where}: string data holding code points that are not valid "
                          f"Unicode (e.g. {int(codes[bad][0]):#x})")


def read_npy_header(f: BinaryIO, size: int, where: str
                    ) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse and check one .npy header, reading nothing past it.

    Parameters
    ----------
    f : binary stream positioned at the magic string
    size : int
        Bytes the stream holds (the file size, or the zip member's ``file_size``).
    where : str
        The file (and member) for messages.

    Returns
    -------
    shape : tuple of int
    fortran_order : bool
    dtype : numpy.dtype
        Numeric or string, never object or structured.
    offset : int
        Bytes before the data (magic, version, header); the data are exactly
        ``size - offset`` bytes, ``prod(shape) * dtype.itemsize``.

    Raises
    ------
    FormatError
        Not a .npy stream, an unsupported version or dtype, or a shape whose
        bytes differ from those present (a truncated or padded file).
    """
    counted = _Counting(f)
    try:
        version = npy_format.read_magic(counted)
    except ValueError as exc:
        raise FormatError(f"{where}: not a .npy array ({exc})") from None
    if version not in PREFIX_BYTES:
        raise FormatError(f"{where}: .npy format version {version[0]}.{version[1]}; only 1.0 "
                          f"and 2.0 are read (3.0 holds only structured dtypes)")
    read_header = (npy_format.read_array_header_1_0 if version == (1, 0)
                   else npy_format.read_array_header_2_0)
    try:
        shape, fortran_order, dtype = read_header(counted, max_header_size=MAX_HEADER_SIZE)
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001
        # The header is untrusted text handed to numpy's parser (tokenize, then
        # ast.literal_eval, then dtype construction), whose failures on crafted
        # text span ValueError, SyntaxError, tokenize.TokenError, TypeError,
        # RecursionError...: each one means "not a valid header".
        raise FormatError(f"{where}: bad .npy header ({type(exc).__name__}: "
                          f"{str(exc)[:200]})") from None
    _check_dtype(dtype, where)
    if len(shape) > MAX_NDIM:
        raise FormatError(f"{where}: header claims {len(shape)} dimensions (at most {MAX_NDIM})")
    if any(d < 0 for d in shape):
        raise FormatError(f"{where}: header claims a negative dimension in shape {shape}")
    # Even an empty array must have a representable shape (numpy refuses one whose
    # non-zero dimensions overflow a signed pointer-sized integer).
    if math.prod(max(d, 1) for d in shape) * dtype.itemsize > np.iinfo(np.intp).max:
        raise FormatError(f"{where}: header claims shape {shape}, too large for any array")
    n_bytes = math.prod(shape) * dtype.itemsize
    present = size - counted.n_read
    if n_bytes != present:
        raise FormatError(f"{where}: header claims shape {shape} of {dtype} ({n_bytes} bytes) "
                          f"but {present} bytes of data are present")
    return tuple(shape), bool(fortran_order), dtype, counted.n_read


def _read_npy(f: BinaryIO, size: int, where: str) -> np.ndarray:
    """Parse one .npy stream of ``size`` bytes, checking its header before allocating.

    Parameters
    ----------
    f : binary stream positioned at the magic string
    size : int
        Bytes the stream holds (the file size, or the zip member's ``file_size``).
    where : str
        The file (and member) for messages.

    Returns
    -------
    ndarray of the header's shape and dtype.

    Raises
    ------
    FormatError
        As :func:`read_npy_header`, or data that end early.
    """
    shape, fortran_order, dtype, _ = read_npy_header(f, size, where)
    count = math.prod(shape)
    n_bytes = count * dtype.itemsize
    array = np.empty(count, dtype=dtype)
    buffer = memoryview(array.view(np.uint8))
    filled = 0
    while filled < n_bytes:
        chunk = f.read(min(READ_CHUNK, n_bytes - filled))
        if not chunk:
            raise FormatError(f"{where}: data end after {filled} of {n_bytes} bytes")
        buffer[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    _check_text(array, where)
    return array


def _check_member(info: zipfile.ZipInfo, archive_size: int, max_ratio: float,
                  where: str) -> None:
    """Refuse a zip member from its directory entry alone: method, encryption, sizes."""
    if info.flag_bits & 0x1:  # general purpose bit 0: encrypted (APPNOTE 4.4.4)
        raise FormatError(f"{where}: an encrypted zip member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise FormatError(f"{where}: zip compression method {info.compress_type}; numpy "
                          f"writes only stored (0) or deflated (8) members")
    if info.header_offset + info.compress_size > archive_size:
        raise FormatError(f"{where}: the zip directory places {info.compress_size} bytes at "
                          f"offset {info.header_offset}, past the end of the "
                          f"{archive_size}-byte file")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise FormatError(f"{where}: a stored zip member claiming {info.file_size} bytes in "
                          f"{info.compress_size}")
    if info.file_size > max(RATIO_FREE_BYTES, max_ratio * info.compress_size):
        raise FormatError(f"{where}: {info.compress_size} compressed bytes claim to inflate "
                          f"to {info.file_size} (over {max_ratio:g}:1, a likely zip bomb); "
                          f"if the file is trusted, pass max_inflate_ratio= or save it "
                          f"uncompressed with numpy.savez")


def _read_npz(path: Path, max_ratio: float) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with open_regular(path, error=DatasetError, what="file") as f:
        if f.read(len(NPY_MAGIC)) == NPY_MAGIC:
            raise FormatError(f"{path}: a single .npy array; npz:PATH needs a .npz file or "
                              f"a folder of .npy files with X/y arrays")
        f.seek(0)
        archive_size = os.fstat(f.fileno()).st_size
        try:
            zf = zipfile.ZipFile(f)
        except _PARSE_ERRORS as exc:
            raise FormatError(f"{path}: not a readable .npz archive ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
        with zf:
            members: dict[str, zipfile.ZipInfo] = {}
            names = []
            for info in zf.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                names.append(key)
                if key in KEYS:
                    if key in members:
                        raise FormatError(f"{path}: holds {key} twice ({members[key].filename!r} "
                                          f"and {info.filename!r})")
                    members[key] = info
            if not members:
                raise FormatError(f"{path}: expected arrays X_train, y_train, X_test, y_test "
                                  f"(or X, y); found {sorted(names)}")
            data = {}
            for key, info in members.items():
                where = f"{path}[{key}]"
                _check_member(info, archive_size, max_ratio, where)
                try:
                    with zf.open(info) as member:
                        data[key] = _read_npy(member, info.file_size, where)
                except DatasetError:
                    raise
                except _PARSE_ERRORS as exc:
                    raise FormatError(f"{where}: unreadable zip member ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from None
    return data, {k: f"{path}[{k}]" for k in data}


def _read_npy_folder(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    files = {p.stem: p for p in sorted(path.glob("*.npy")) if not p.name.startswith(".")}
    wanted = [k for k in KEYS if k in files]
    if not wanted:
        raise FormatError(f"{path}: no X_train.npy/y_train.npy/X_test.npy/y_test.npy or "
                          f"X.npy/y.npy in this folder (found {sorted(files) or 'none'})")
    data = {}
    for key in wanted:
        with open_regular(files[key], error=DatasetError, what=".npy file") as f:
            size = os.fstat(f.fileno()).st_size
            try:
                data[key] = _read_npy(f, size, str(files[key]))
            except DatasetError:
                raise
            except OSError as exc:
                raise FormatError(f"{files[key]}: cannot read ({exc})") from None
    return data, {k: str(files[k]) for k in wanted}


def _check_ratio(max_inflate_ratio) -> float:
    if isinstance(max_inflate_ratio, bool) or not isinstance(max_inflate_ratio, (int, float)) \
            or not max_inflate_ratio >= 1 or not math.isfinite(max_inflate_ratio):
        raise ConfigError(f"npz: max_inflate_ratio must be a finite number >= 1, got "
                          f"{max_inflate_ratio!r}")
    return float(max_inflate_ratio)


def read_arrays(path: str | os.PathLike, *, max_inflate_ratio: float = MAX_INFLATE_RATIO
                ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The named arrays of a ``.npz`` file or a folder of ``.npy`` files, read safely.

    Only the arrays ``X_train, y_train, X_test, y_test, X, y, classes`` are
    read (members ``NAME.npy`` or ``NAME``); other members are listed in
    messages but never decompressed.

    Parameters
    ----------
    path : str or path-like
        A ``.npz`` file or a folder of ``.npy`` files.
    max_inflate_ratio : float, default MAX_INFLATE_RATIO (100)
        Largest inflated/compressed size of a deflated member over 1 MiB.

    Returns
    -------
    arrays : dict of str to ndarray
        Each array with its header's shape and dtype (bool, int, uint, float,
        unicode or byte strings).
    where : dict of str to str
        The file of each array, ``"PATH[NAME]"`` for archive members.

    Raises
    ------
    DatasetError
        ``path`` is missing, unreadable or not a regular file or folder (a FIFO
        is refused without blocking).
    FormatError
        (a DatasetError) anything wrong with the content; the message names
        the file, the array and the cause.
    ConfigError
        ``max_inflate_ratio`` is not a finite number >= 1.
    """
    max_ratio = _check_ratio(max_inflate_ratio)
    path = Path(path)
    try:
        is_folder = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file or folder") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise DatasetError(f"{str(path)!r}: cannot read ({reason})") from None
    if is_folder:
        return _read_npy_folder(path)
    return _read_npz(path, max_ratio)


def _as_text(array: np.ndarray, where: str) -> np.ndarray:
    """Byte-string labels or class names as unicode (ASCII, as numpy decodes them)."""
    if array.dtype.kind != "S":
        return array
    try:
        return array.astype(str)
    except UnicodeDecodeError:
        raise FormatError(f"{where}: byte-string labels must be ASCII") from None


def _features(X: np.ndarray, where: str) -> np.ndarray:
    """Check ``X`` (n, d) or (n, H, W[, C]) and give it the dtype the module docstring names."""
    if not 2 <= X.ndim <= 4:
        raise FormatError(f"{where}: X must have shape (n, d) or (n, H, W[, C]), got {X.shape}")
    if 0 in X.shape[1:]:
        raise FormatError(f"{where}: X samples of shape {X.shape[1:]} hold no values")
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


def _labels(ys: list[np.ndarray], wheres: list[str], classes: np.ndarray | None,
            classes_where: str = "classes") -> tuple[list[np.ndarray], list[str]]:
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
            raise FormatError(f"{classes_where}: classes holds duplicate names: {names[:20]}")
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


def load_arrays(path: str | os.PathLike, name: str | None = None, *, test_size: float = 0.2,
                seed: int = 0, max_inflate_ratio: float = MAX_INFLATE_RATIO,
                **options) -> Dataset:
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
    max_inflate_ratio : float, default MAX_INFLATE_RATIO (100)
        Largest inflated/compressed size ratio of a deflated ``.npz`` member
        over 1 MiB; raise it only for files you trust.

    Returns
    -------
    Dataset
        ``X_*`` as uint8 images (n, H, W, C) or features (n, d); int64 labels.

    Raises
    ------
    DatasetError
        Missing or non-regular ``path``; labels that do not fit the data.
    FormatError
        A malformed, oversized or mistyped array (see :func:`read_arrays`).
    ConfigError
        An unknown option, or a bad ``test_size``, ``seed`` or ``max_inflate_ratio``.
    """
    check_options("npz", options, set())
    path = Path(path).expanduser()
    arrays, where = read_arrays(path, max_inflate_ratio=max_inflate_ratio)
    for key in ("y_train", "y_test", "y", "classes"):
        if key in arrays:
            arrays[key] = _as_text(arrays[key], where[key])
    classes = arrays.get("classes")
    if classes is not None and (classes.ndim != 1 or classes.dtype.kind != "U"):
        raise FormatError(f"{where['classes']}: classes must be a 1-D array of strings")
    classes_where = where.get("classes", "classes")
    if all(k in arrays for k in SPLIT_KEYS):
        Xs = [_features(arrays["X_train"], where["X_train"]),
              _features(arrays["X_test"], where["X_test"])]
        ys, names = _labels([arrays["y_train"], arrays["y_test"]],
                            [where["y_train"], where["y_test"]], classes, classes_where)
        if Xs[0].shape[1:] != Xs[1].shape[1:]:
            raise FormatError(f"{path}: X_train samples have shape {Xs[0].shape[1:]} but X_test "
                              f"samples {Xs[1].shape[1:]}")
        if Xs[0].dtype != Xs[1].dtype:
            Xs = [X.astype(np.result_type(*Xs)) for X in Xs]
        how = "given train/test split"
    elif "X" in arrays and "y" in arrays:
        X = _features(arrays["X"], where["X"])
        (y,), names = _labels([arrays["y"]], [where["y"]], classes, classes_where)
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

