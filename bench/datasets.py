"""Benchmark section ``datasets``: MNIST parsing and image-folder decoding.

    python -m bench.datasets [--quick]     # stand-alone
    run(data, quick) -> rows               # as a section of ``python -m bench``

Rows compare, within one process: loading the shared MNIST through
``load_dataset`` (checksums included); decoding a generated tree of small PNGs
with a plain sequential Pillow loop (the anchor), with ``load_dataset`` on one
thread, and with ``load_dataset`` on all cores.
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
    n = 2000 if quick else 20000
    # Small PNGs (per-file Python overhead dominates) and larger JPEGs (decoding
    # in C, where Pillow releases the GIL, dominates).
    for count, size, ext in ((n, 32, "png"), (n // 10, 256, "jpg")):
        with tempfile.TemporaryDirectory() as tmp:
            paths = _make_tree(Path(tmp), count, size=size, ext=ext)
            what = f"{count} {ext.upper()} {size}x{size}"
            configs = [("naive Pillow loop", None), ("folder: loader, 1 thread", 1),
                       (f"folder: loader, {os.cpu_count()} threads", 0)]
            # Interleaved repeats, median per config: the machine is shared and noisy.
            times: dict[str, list] = {label: [] for label, _ in configs}
            for _ in range(1 if quick else 3):
                for label, jobs in configs:
                    with measure() as m:
                        if jobs is None:
                            n_loaded = len(_naive(sorted(paths)))
                        else:
                            ds = imgcls.load_dataset(f"folder:{tmp}", n_jobs=jobs or None)
                            n_loaded = len(ds.y_train) + len(ds.y_test)
                    assert n_loaded == count
                    times[label].append((m.seconds, m.peak_extra_mib))
            anchor = float(np.median([t for t, _ in times[configs[0][0]]]))
            for label, _ in configs:
                sec = float(np.median([t for t, _ in times[label]]))
                rows.append({"section": "datasets", "task": f"{label}, {what}", "seconds": sec,
                             "peak_extra_mib": max(mem for _, mem in times[label]),
                             "vs_anchor": anchor / sec})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.datasets", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(markdown_table(run(None, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
