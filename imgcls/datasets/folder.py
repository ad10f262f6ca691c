"""``folder:PATH``: an image tree, decoded with Pillow on all cores.

Layouts::

    PATH/train/<class>/<file>, PATH/test/<class>/<file>   the split is given
    PATH/<class>/<file>                                   seeded stratified split

Images may sit deeper inside a class folder.  Files and folders whose name
starts with ``.`` (``.DS_Store``, ``.ipynb_checkpoints``) and ``__MACOSX`` are
ignored, as are files whose extension is not an image format's (PNG, JPEG, BMP,
GIF, WebP).  Decoding runs in a thread pool: Pillow releases the GIL while it
decodes, so threads use every core without copying pixels between processes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .._progress import bar
from ..errors import ConfigError, DatasetError, ImageError
from .base import Dataset, DatasetSpec, check_options, register, stratified_split

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".gif",
                              ".webp"})
MODES = {"RGB": 3, "L": 1}
CHUNK = 64  # images per task: amortises the executor's per-task cost


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def _image_files(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively), hidden ones left out, sorted.

    Plain strings, not Paths: for tens of thousands of files pathlib's object
    creation and comparison cost as much as decoding a small image.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        found += [os.path.join(dirpath, f) for f in filenames
                  if not is_hidden(f) and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    found.sort()
    return found


def scan_tree(root: Path) -> tuple[list[str], dict[str, list[tuple[str, str]]], bool]:
    """Find the images of each split.

    Returns
    -------
    classes : list of str
        Sorted class folder names.
    files : dict split -> list of (path, class name)
        ``{"all": [...]}`` for a tree without train/test folders.
    has_split : bool
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (folder:PATH needs PATH/<class>/<image> or "
                           f"PATH/train|test/<class>/<image>)")
    top = {d.name.lower(): d for d in _visible_dirs(root)}
    has_split = "train" in top and "test" in top
    splits = {"train": top["train"], "test": top["test"]} if has_split else {"all": root}
    files: dict[str, list[tuple[str, str]]] = {}
    classes: set[str] = set()
    for split, folder in splits.items():
        class_dirs = _visible_dirs(folder)
        if not class_dirs:
            loose = _image_files(folder)
            hint = f" (it holds {len(loose)} images but no <class> sub-folders)" if loose else ""
            raise DatasetError(f"{folder}: folder with no images in class sub-folders{hint}")
        files[split] = []
        for class_dir in class_dirs:
            images = _image_files(class_dir)
            if not images:
                raise DatasetError(f"{class_dir}: empty class folder (no PNG/JPEG/BMP/GIF/WebP "
                                   f"images); remove it or add images")
            classes.add(class_dir.name)
            files[split] += [(p, class_dir.name) for p in images]
    return sorted(classes), files, has_split


def _decode(path: str, mode: str, size: tuple[int, int] | None,
            max_pixels: int | None) -> np.ndarray | str:
    """One image as an array (H, W[, C]) uint8, or the reason it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            # Checked on the header, before any pixel is decoded.
            if max_pixels is not None and width * height > max_pixels:
                return (f"{width}x{height} = {width * height} pixels exceeds "
                        f"max_pixels={max_pixels}")
            im.load()
            if im.mode != mode:
                im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        return f"over Pillow's decompression-bomb limit ({exc})"
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        # OSError covers "cannot identify image file" and "image file is truncated".
        return f"corrupt or truncated image ({type(exc).__name__}: {exc})"


def _decode_chunk(paths, mode, size, max_pixels):
    return [_decode(p, mode, size, max_pixels) for p in paths]


def decode_images(paths: list[str], mode: str, size, max_pixels, n_jobs: int | None,
                  progress: bool | None, on_error: str, root: Path
                  ) -> tuple[np.ndarray | None, np.ndarray, list[tuple[str, str]]]:
    """Decode ``paths`` with a thread pool straight into one (n, H, W, C) buffer.

    Returns
    -------
    X : ndarray (n_kept, H, W, C) uint8, or None when nothing could be read
    kept : ndarray of int
        Index into ``paths`` of each row of ``X`` (in order).
    skipped : list of (path, reason)
        Files left out (only with ``on_error="skip"``; otherwise the first
        bad file raises :class:`ImageError`).
    """
    workers = n_jobs if n_jobs and n_jobs > 0 else (os.cpu_count() or 1)
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    X: np.ndarray | None = None
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    first = ""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with bar("decoding images", len(paths),
                 disable=None if progress is None else not progress) as advance:
            results = pool.map(_decode_chunk, chunks,
                               *([x] * len(chunks) for x in (mode, size, max_pixels)))
            for c, result in enumerate(results):
                for j, arr in enumerate(result):
                    i = c * CHUNK + j
                    if isinstance(arr, str):
                        if on_error == "raise":
                            raise ImageError(f"{paths[i]}: {arr} (pass on_error='skip' to "
                                             f"leave such files out)")
                        skipped.append((paths[i], arr))
                        continue
                    if arr.ndim == 2:
                        arr = arr[..., None]
                    if X is None:
                        # One buffer for all images: no list of arrays to stack (which
                        # would need twice the memory at the end).
                        X, first = np.empty((len(paths), *arr.shape), np.uint8), paths[i]
                    elif arr.shape != X.shape[1:]:
                        raise DatasetError(
                            f"{root}: images have different sizes, e.g. {first} is "
                            f"{X.shape[2]}x{X.shape[1]} and {paths[i]} is "
                            f"{arr.shape[1]}x{arr.shape[0]} (width x height); pass "
                            f"image_size=(H, W) to resize them")
                    X[len(kept)] = arr
                    kept.append(i)
                advance(len(result))
    finally:
        # On an error, do not decode the rest of a large folder for nothing.
        pool.shutdown(wait=True, cancel_futures=True)
    return (None if X is None else X[:len(kept)]), np.array(kept, dtype=np.int64), skipped


def _check_options(image_size, mode, on_error, max_pixels) -> tuple[int, int] | None:
    if mode not in MODES:
        raise ConfigError(f"folder: mode must be 'RGB' or 'L', got {mode!r}")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"folder: on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or
                                   not isinstance(max_pixels, (int, np.integer))
                                   or max_pixels <= 0):
        raise ConfigError(f"folder: max_pixels must be a positive int or None, got {max_pixels!r}")
    if image_size is None:
        return None
    try:
        h, w = (int(v) for v in image_size)
        ok = h > 0 and w > 0 and (h, w) == tuple(image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"folder: image_size must be (height, width) positive ints, "
                          f"got {image_size!r}")
    return h, w


def load_folder(path: str | Path, name: str | None = None, *, image_size=None,
                mode: str = "RGB", on_error: str = "raise", max_pixels: int | None = None,
                test_size: float = 0.2, seed: int = 0, n_jobs: int | None = None,
                progress: bool | None = None, **options) -> Dataset:
    """Load an image tree (see the module docstring for layouts).

    Parameters
    ----------
    path : str or Path
    name : str, optional
        Name recorded on the Dataset (default ``"folder:<path>"``).
    image_size : (int, int), optional
        Resize every image to (height, width) (bilinear).  Without it, all
        images must have the same size.
    mode : {"RGB", "L"}, default "RGB"
        Colour mode; gives C = 3 or C = 1.
    on_error : {"raise", "skip"}, default "raise"
        On a corrupt, truncated or too large image: raise :class:`ImageError`
        naming the file, or leave it out and list it in ``Dataset.skipped``.
    max_pixels : int, optional
        Largest width * height accepted, checked per call from the image
        header (Pillow's global ``MAX_IMAGE_PIXELS`` is not touched; Pillow's
        own decompression-bomb refusal above twice that global still applies
        and is reported like any unreadable image).
    test_size : float, default 0.2
        Test fraction of each class when the tree has no train/test folders.
    seed : int, default 0
        Seed of that stratified split.
    n_jobs : int, optional
        Decoding threads (default: all cores).
    progress : bool, optional
        Progress bar (default: when stderr is a terminal).

    Returns
    -------
    Dataset
        Images (n, H, W, C) uint8; classes are the sorted class folder names.
    """
    check_options("folder", options, set())
    size = _check_options(image_size, mode, on_error, max_pixels)
    root = Path(path).expanduser()
    name = name or f"folder:{path}"
    classes, files, has_split = scan_tree(root)
    index = {c: i for i, c in enumerate(classes)}
    if has_split:
        parts = {"train": files["train"], "test": files["test"]}
        how = "train/test folders"
    else:
        # Split the file list (not the decoded images): the split then does not
        # depend on which files fail to decode, and train/test are contiguous
        # slices of one buffer below.
        pairs = files["all"]
        tr, te = stratified_split(np.array([index[c] for _, c in pairs]), test_size, seed,
                                  str(root))
        parts = {"train": [pairs[i] for i in tr], "test": [pairs[i] for i in te]}
        how = f"stratified split test_size={test_size}, seed={seed}"
    ordered = parts["train"] + parts["test"]
    labels = np.array([index[c] for _, c in ordered], dtype=np.int64)
    X, kept, skipped = decode_images([p for p, _ in ordered], mode, size, max_pixels, n_jobs,
                                     progress, on_error, root)
    if X is None:
        raise DatasetError(f"{root}: none of the {len(ordered)} images could be read "
                           f"(all skipped)")
    n_train = int(np.searchsorted(kept, len(parts["train"])))
    y = labels[kept]
    for split, lo, hi, n_files in (("train", 0, n_train, 0),
                                   ("test", n_train, len(kept), len(parts["train"]))):
        wanted = set(labels[n_files:n_files + len(parts[split])].tolist())
        lost = sorted(classes[c] for c in wanted - set(y[lo:hi].tolist()))
        if lost:
            raise DatasetError(f"{root}: no readable image left in class folder(s) {lost} "
                               f"of the {split} split (all were skipped)")
    described = f"{'x'.join(map(str, size)) if size else 'native size'}, mode {mode}"
    return Dataset(name=name, X_train=X[:n_train], y_train=y[:n_train], X_test=X[n_train:],
                   y_test=y[n_train:], classes=classes, skipped=skipped,
                   source=f"{root} (image folder, {len(ordered)} files, {described}; {how}"
                          + (f"; {len(skipped)} skipped" if skipped else "") + ")")


register(DatasetSpec("folder", "an image tree PATH/<class>/<image> or "
                     "PATH/train|test/<class>/<image> (PNG, JPEG, BMP, GIF, WebP)",
                     load_folder, prefix=True))
