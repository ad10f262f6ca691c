"""``folder:PATH``: an image tree, decoded with Pillow on all cores.

Layouts::

    PATH/train/<class>/<file>, PATH/test/<class>/<file>   the split is given
    PATH/<class>/<file>                                   seeded stratified split
    PATH/train/<class>/<file> alone                       seeded stratified split of train

Images may sit deeper inside a class folder.  Files and folders whose name
starts with ``.`` (``.DS_Store``, ``.ipynb_checkpoints``) and ``__MACOSX`` are
ignored, as are files whose extension is not an image format's (PNG, JPEG, BMP,
GIF, WebP).

Each file is decoded by :mod:`imgcls.datasets._decode`, the one decoding path
that ``imgcls predict`` uses too (its docstring states the rules for 16-bit,
alpha, palette, CMYK, EXIF orientation and resizing).  Only regular files are
opened: a FIFO is reported like an unreadable image, never waited on.

Decoding runs a chunk of files per task on all cores.  Larger images go to a thread pool: Pillow releases the GIL while it
decodes, so threads use every core without copying pixels between processes.
Many small images go to forked worker processes: there Pillow's per-file
Python work, which holds the GIL, is most of the time, so threads would run
nearly one at a time.  Workers get file paths and options and send back one
uint8 array per chunk.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from .._progress import bar
from ..errors import ConfigError, DatasetError, ImageError
from ._decode import MODES, decode_chunk, header_sizes
from .base import Dataset, check_options, stratified_split

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".gif",
                              ".webp"})

THREAD_CHUNK = 64  # images per thread task: amortises the executor's per-task cost
PROCESS_CHUNK = 256  # at most this many images per process task (one round trip each)
# backend="auto": images of at most PROCESS_MAX_PIXELS pixels (H * W) are
# "small"; processes decode from PROCESS_MIN_FILES of them on (forking and a
# round trip per chunk cost a few tens of ms; see bench/datasets.py for the
# crossover), one in-process loop below that.
PROCESS_MAX_PIXELS = 64 * 64
PROCESS_MIN_FILES = 1000
# The one buffer for every image, (n, H, W, C), is reserved from the first
# decoded image's shape.  Up to PREALLOC_BYTES that happens at once (CIFAR-10's
# 60,000 32x32 RGB images are 184 MB); above it every header is read first
# (:func:`check_sizes`), so that one large image in front of many small ones
# is reported as "different sizes" instead of reserving n times its size.
PREALLOC_BYTES = 1 << 30


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
    if has_split:
        splits = {"train": top["train"], "test": top["test"]}
    elif list(top) == ["train"]:
        # A training split without its test split (the CIFAR-10 JPEG release
        # unpacks to train/<class>/ alone): "train" is not a class, its
        # sub-folders are; the seeded split makes the test part.
        splits = {"all": top["train"]}
    else:
        splits = {"all": root}
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


def choose_backend(backend: str, n_files: int, workers: int,
                   out_pixels: int | None) -> str:
    """Where to decode: ``"sequential"``, ``"threads"`` or ``"processes"``.

    ``out_pixels`` is H * W of one decoded image (None when unknown).
    """
    if workers <= 1 or n_files <= 1:
        return "sequential"
    if backend == "threads" or not _fork_is_usable():
        return "threads"
    if backend == "processes":
        return "processes"
    # auto.  For larger images the decoding itself (GIL released) dominates:
    # threads scale, and shipping pixels back from processes only adds copies.
    # For small images Pillow's per-file Python work, which holds the GIL, is
    # most of the time: two threads then fight over the GIL and take longer
    # than one loop (measured 2x slower on 2 free cores, bench/datasets.py),
    # so processes for many of them, one in-process loop for a few (forking
    # costs more than it saves).
    if out_pixels is None or out_pixels > PROCESS_MAX_PIXELS:
        return "threads"
    return "processes" if n_files >= PROCESS_MIN_FILES else "sequential"


def _fork_is_usable() -> bool:
    """Whether worker processes can be forked here.

    Fork, not spawn/forkserver: those re-import the user's ``__main__`` in
    each worker, which breaks every script that calls ``load_dataset`` at
    top level without an ``if __name__ == "__main__"`` guard (most student
    code), and they pay Python start-up and imports per pool.  Forking a
    process that has OpenMP/BLAS threads (faiss, numba) is safe here because
    the workers only run Pillow and numpy array copies, never OpenMP or BLAS,
    and the pool is forked before the progress bar starts its thread.
    Linux only: on macOS system libraries are not fork-safe.  A daemonic
    process (itself a pool worker) may not have children.
    """
    return (sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()
            and not mp.current_process().daemon)


def _peek_size(paths: list[str], size) -> tuple[int, int] | None:
    """(H, W) of the decoded images, from ``size`` or the first file's header."""
    if size is not None:
        return size
    first = header_sizes(paths[:1], None)
    return first[0] if first else None  # None: the decoding proper reports it


def _different_sizes(root: Path, a: str, a_shape, b: str, b_shape) -> DatasetError:
    return DatasetError(
        f"{root}: images have different sizes, e.g. {a} is {a_shape[1]}x{a_shape[0]} "
        f"and {b} is {b_shape[1]}x{b_shape[0]} (width x height); pass "
        f"image_size=(H, W) to resize them")


def check_sizes(paths: list[str], max_pixels: int | None, kind: str, workers: int,
                root: Path) -> None:
    """Raise :class:`DatasetError` naming two files of different sizes, from headers only.

    Files whose header cannot be read or is over ``max_pixels`` are left to
    the decoding, which reports them.
    """
    first: tuple[str, tuple[int, int]] | None = None
    with _chunk_results(kind, paths, workers, (max_pixels,), work=header_sizes) as results:
        for (lo, _), sizes in results:
            for j, hw in enumerate(sizes):
                if hw is None:
                    continue
                if first is None:
                    first = (paths[lo + j], hw)
                elif hw != first[1]:
                    raise _different_sizes(root, *first, paths[lo + j], hw)


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]


@contextlib.contextmanager
def _chunk_results(kind: str, paths: list[str], workers: int, args: tuple, work=decode_chunk):
    """Yield an iterator over ((lo, hi), ``work(paths[lo:hi], *args)``) in file order."""
    if kind == "sequential":
        spans = _chunks(len(paths), THREAD_CHUNK)
        yield ((s, work(paths[s[0]:s[1]], *args)) for s in spans)
        return
    if kind == "processes":
        # Enough chunks to balance the load (workers finish unevenly on a
        # busy machine), each large enough to amortise a round trip.
        chunk = min(PROCESS_CHUNK, max(16, -(-len(paths) // (8 * workers))))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))
    else:
        chunk = THREAD_CHUNK
        pool = ThreadPoolExecutor(max_workers=workers)
    spans = _chunks(len(paths), chunk)
    try:
        with warnings.catch_warnings():
            # Python >= 3.12 warns on any fork of a process with threads; see
            # _fork_is_usable for why it is safe for these workers.
            warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks",
                                    category=DeprecationWarning)
            # Only paths and options go to workers; arrays come back.  map()
            # submits every chunk now, so processes are forked here, before
            # the caller starts the progress bar's thread.
            results = pool.map(work, [paths[lo:hi] for lo, hi in spans],
                               *([a] * len(spans) for a in args))
        yield zip(spans, results)
    finally:
        # On an error, do not decode the rest of a large folder for nothing.
        pool.shutdown(wait=True, cancel_futures=True)


def decode_images(paths: list[str], mode: str, size, max_pixels, n_jobs: int | None,
                  progress: bool | None, on_error: str, root: Path, backend: str = "auto"
                  ) -> tuple[np.ndarray | None, np.ndarray, list[tuple[str, str]]]:
    """Decode ``paths`` into one (n, H, W, C) buffer, a chunk of files per task.

    Parameters
    ----------
    backend : {"auto", "threads", "processes"}
        See :func:`choose_backend`; ``n_jobs=1`` always decodes in-process.

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
    channels = MODES[mode]
    peeked = _peek_size(paths, size)
    kind = choose_backend(backend, len(paths), workers,
                          None if peeked is None else peeked[0] * peeked[1])
    X: np.ndarray | None = None
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    ref: tuple[str, tuple[int, ...]] | None = None  # the first decoded file and its shape
    # Sizes all agree when resized; else compare every header before a buffer
    # of more than PREALLOC_BYTES is reserved from the first image's shape.
    checked = size is not None
    try:
        if (not checked and peeked is not None
                and len(paths) * peeked[0] * peeked[1] * channels > PREALLOC_BYTES):
            check_sizes(paths, max_pixels, kind, workers, root)
            checked = True
        with _chunk_results(kind, paths, workers,
                            (mode, size, max_pixels, on_error == "raise")) as results, \
                bar("decoding images", len(paths),
                    disable=None if progress is None else not progress) as advance:
            for (lo, hi), (blocks, got, errors, mismatch) in results:
                shape = blocks[0].shape[1:] if blocks else None
                if ref is None and shape is not None:
                    ref = (paths[lo + got[0]], shape)
                # Report what comes first in file order, as a sequential loop
                # would, and before anything is reserved for these images.
                events = [(lo + j, "error", reason) for j, reason in errors]
                if mismatch is not None:
                    events.append((lo + mismatch[0], "size", mismatch[1]))
                if shape is not None and shape != ref[1]:
                    events.append((lo + got[0], "size", shape))
                for i, what, detail in sorted(events, key=lambda e: e[0]):
                    if what == "size":
                        raise _different_sizes(root, *ref, paths[i], detail)
                    if on_error == "raise":
                        raise ImageError(f"{paths[i]}: {detail} (pass on_error='skip' to "
                                         f"leave such files out)")
                    skipped.append((paths[i], detail))
                if shape is not None:
                    if X is None:
                        if not checked and len(paths) * int(np.prod(shape)) > PREALLOC_BYTES:
                            # The first file's header was unreadable; in-process
                            # (forking now would copy the progress bar's thread).
                            check_sizes(paths, max_pixels, "sequential", 1, root)
                        # One buffer for all images: no list of arrays to stack
                        # (which would need twice the memory at the end).
                        X = np.empty((len(paths), *shape), np.uint8)
                    row = len(kept)
                    for block in blocks:
                        X[row:row + len(block)] = block
                        row += len(block)
                    kept += [lo + j for j in got]
                advance(hi - lo)
    except BrokenProcessPool as exc:
        raise DatasetError(f"{root}: an image-decoding worker process died ({exc}); "
                           f"pass backend='threads' or n_jobs=1") from exc
    return (None if X is None else X[:len(kept)]), np.array(kept, dtype=np.int64), skipped


def _check_options(image_size, mode, on_error, max_pixels, n_jobs,
                   backend) -> tuple[int, int] | None:
    if backend not in ("auto", "threads", "processes"):
        raise ConfigError(f"folder: backend must be 'auto', 'threads' or 'processes', "
                          f"got {backend!r}")
    if n_jobs is not None and (isinstance(n_jobs, bool) or
                               not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0):
        raise ConfigError(f"folder: n_jobs must be a non-zero int (-1: all cores) or None, "
                          f"got {n_jobs!r}")
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
                progress: bool | None = None, backend: str = "auto", **options) -> Dataset:
    """Load an image tree (see the module docstring for layouts).

    Parameters
    ----------
    path : str or Path
    name : str, optional
        Name recorded on the Dataset (default ``"folder:<path>"``).
    image_size : (int, int), optional
        Resize every image to (height, width) (bilinear).  Without it, all
        images must have the same size (after EXIF orientation); sizes are
        compared before the (n, H, W, C) buffer is reserved, and a mismatch is
        a :class:`DatasetError` naming two files and their sizes.
    mode : {"RGB", "L"}, default "RGB"
        Colour mode; gives C = 3 or C = 1.
    on_error : {"raise", "skip"}, default "raise"
        On a corrupt, truncated or too large image, a FIFO or other
        non-regular file, or 32-bit pixels: raise :class:`ImageError` naming
        the file and the cause, or leave it out and list it with the cause in
        ``Dataset.skipped``.
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
        Decoding workers (default, or any negative value: all cores); 1
        decodes in this process, one file after another.
    progress : bool, optional
        Progress bar (default: when stderr is a terminal), advanced per chunk.
    backend : {"auto", "threads", "processes"}, default "auto"
        Where to decode.  ``"auto"``: images of at most ``PROCESS_MAX_PIXELS``
        pixels (after resizing) are decoded by forked worker processes from
        ``PROCESS_MIN_FILES`` files on and in this process below that (threads
        would be held up by the GIL); larger images by threads.  Processes
        are only used on Linux (fork); elsewhere, and in a daemonic process,
        threads are.

    Returns
    -------
    Dataset
        Images (n, H, W, C) uint8; classes are the sorted class folder names.
    """
    check_options("folder", options, set())
    size = _check_options(image_size, mode, on_error, max_pixels, n_jobs, backend)
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
                                     progress, on_error, root, backend)
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
