"""Benchmark section ``datasets``: MNIST parsing and image-folder decoding.

    python -m bench.datasets [--quick]     # stand-alone
    run(data, quick) -> rows               # as a section of ``python -m bench``

Rows compare, within one process: loading the shared MNIST through
``load_dataset`` (checksums included); decoding generated trees (20000 PNGs
32x32, 2000 JPEGs 256x256) with a plain sequential Pillow loop (the anchor),
with ``load_dataset`` in-process (``n_jobs=1``), with threads, with worker
processes, and with the automatic choice; and the crossover of threads and
processes for small PNGs.  CPU seconds include the worker processes'.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import markdown_table, measure, mnist_root


def _make_tree(root: Path, n: int, n_classes: int = 10, size: int = 32,
               ext: str = "png") -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"class{i % n_classes}" / f"{i:06d}.{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        # smooth-ish content so compression is realistic (not pure noise)
        base = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        Image.fromarray(np.kron(base, np.ones((4, 4, 1), np.uint8))).save(p)
        paths.append(p)
    return paths


def _naive(paths: list[Path]) -> np.ndarray:
    """What course code does: one image after another on one core."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes)."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in
               (resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN)))


def _busy(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def _parallel_headroom(cores: int, n: int = 5_000_000) -> dict:
    """How many cores this run really gets: a pure-Python loop on ``cores``
    forked processes vs the same total work in one.  On a shared machine this
    is often well under ``cores``; read the decoding ratios against it."""
    import multiprocessing as mp

    with measure() as one:
        _busy(cores * n)
    with mp.get_context("fork").Pool(cores) as pool:
        with measure() as many:
            pool.map(_busy, [n] * cores)
    return {"section": "datasets", "task": f"calibration: busy loop, {cores} processes vs 1",
            "seconds": many.seconds, "peak_extra_mib": None,
            "vs_anchor": one.seconds / many.seconds}


def _compare(tmp: str, paths: list[Path], configs, repeats: int, what: str) -> list[dict]:
    """Interleaved repeats of each config, median wall time, ratios to the first."""
    import imgcls

    times: dict[str, list] = {label: [] for label, _ in configs}
    for _ in range(repeats):
        for label, options in configs:
            cpu = _cpu_seconds()
            with measure() as m:
                if options is None:
                    n_loaded = len(_naive(sorted(paths)))
                else:
                    ds = imgcls.load_dataset(f"folder:{tmp}", **options)
                    n_loaded = len(ds.y_train) + len(ds.y_test)
            assert n_loaded == len(paths)
            times[label].append((m.seconds, m.peak_extra_mib, _cpu_seconds() - cpu))
    anchor = float(np.median([t for t, _, _ in times[configs[0][0]]]))
    rows = []
    for label, _ in configs:
        sec = float(np.median([t for t, _, _ in times[label]]))
        rows.append({"section": "datasets", "task": f"{label}, {what}", "seconds": sec,
                     "cpu_seconds": float(np.median([c for _, _, c in times[label]])),
                     "peak_extra_mib": max(mem for _, mem, _ in times[label]),
                     "vs_anchor": anchor / sec})
    return rows


def run(data=None, quick: bool = False) -> list[dict]:
    import imgcls
    import sklearn.model_selection  # noqa: F401  (imported up front: not part of any timing)

    rows = []
    if mnist_root().is_dir():
        times = []
        for _ in range(1 if quick else 3):
            with measure() as m:
                imgcls.load_dataset("mnist", root=mnist_root())
            times.append(m.seconds)
        rows.append({"section": "datasets", "task": "load_dataset('mnist', root=...)",
                     "seconds": float(np.median(times)), "peak_extra_mib": m.peak_extra_mib,
                     "vs_anchor": None})
    n, cores, repeats = (2000 if quick else 20000), os.cpu_count() or 1, (1 if quick else 3)
    rows.append(_parallel_headroom(cores))
    # Small PNGs (per-file Python overhead, which holds the GIL, dominates) and
    # larger JPEGs (decoding in C, where Pillow releases the GIL, dominates).
    # vs_anchor: the naive loop's time / this row's time.
    configs = [("naive Pillow loop", None),
               ("folder: n_jobs=1 (in-process)", {"n_jobs": 1}),
               (f"folder: {cores} threads", {"backend": "threads"}),
               (f"folder: {cores} processes", {"backend": "processes"}),
               ("folder: auto", {})]
    for count, size, ext in ((n, 32, "png"), (n // 10, 256, "jpg")):
        with tempfile.TemporaryDirectory() as tmp:
            paths = _make_tree(Path(tmp), count, size=size, ext=ext)
            rows += _compare(tmp, paths, configs, repeats, f"{count} {ext.upper()} {size}x{size}")
    rows.append(_parallel_headroom(cores))  # again: the load may have changed meanwhile
    # Crossover for small images (where backend="auto" switches from one loop
    # to processes, PROCESS_MIN_FILES): vs_anchor here is n_jobs=1's time / this.
    for count in ((500,) if quick else (250, 500, 1000, 2000, 5000)):
        with tempfile.TemporaryDirectory() as tmp:
            paths = _make_tree(Path(tmp), count, size=32, ext="png")
            rows += _compare(tmp, paths, configs[1:4], repeats + 2, f"{count} PNG 32x32")[1:]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(markdown_table(run(None, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
