"""Shared helpers for the benchmark sections: data, timing, peak memory, tables.

Every section runs in the same process, one after another, so ratios between
tools are measured under the same machine load (the machine is shared and noisy).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist"
RESULTS = REPO / "bench" / "results"


def mnist_root() -> Path:
    """Where the real MNIST lies: $IMGCLS_BENCH_MNIST or ../shared/data/mnist."""
    return Path(os.environ.get("IMGCLS_BENCH_MNIST", DEFAULT_MNIST))


def load_mnist():
    """The official MNIST as an ``imgcls.datasets.Dataset`` (60000 train, 10000 test)."""
    import imgcls

    return imgcls.load_dataset("mnist", root=mnist_root())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_extra_mib: float = 0.0  # peak resident memory above the level at the start
    samples: list = field(default_factory=list)


@contextmanager
def measure(interval: float = 0.005):
    """Time a block and sample its peak resident memory above the starting level.

    RSS is sampled by a thread (every ``interval`` s), so memory allocated by C
    libraries (faiss, BLAS, numba) is seen too, which tracemalloc would miss.
    """
    m = Measurement()
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - start
        stop.set()
        t.join()
        peak[0] = max(peak[0], _rss_bytes())
        m.peak_extra_mib = (peak[0] - base) / 2**20


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as a GitHub markdown table (floats shown with 4 significant digits)."""
    if not rows:
        return ""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
