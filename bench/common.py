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


# OpenBLAS reads these when it is loaded: the CPU kernel it picks and its L2 size.
# Old OpenBLAS builds misdetect new CPUs, so some environments force them.
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def openblas_environment() -> dict:
    """The ``OPENBLAS_*`` kernel variables of this process (None: unset)."""
    return {v: os.environ.get(v) for v in OPENBLAS_VARIABLES}


def environment_without_openblas_variables() -> dict:
    """A copy of ``os.environ`` with both ``OPENBLAS_VARIABLES`` removed, for a subprocess."""
    return {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARIABLES}


def blas_kernels(with_faiss: bool = True) -> list[dict]:
    """The BLAS libraries loaded in this process and the CPU kernel each one uses.

    threadpoolctl reports, per loaded BLAS, its version and (OpenBLAS) the
    ``architecture`` it selected at load time (Haswell, SkylakeX, Zen, ...).
    numpy's and faiss's wheels each bundle their own OpenBLAS, so faiss is
    imported first when ``with_faiss`` (and installed), to list both.

    Returns
    -------
    rows : list of dict
        ``owner`` (numpy, faiss, or the file name), ``library``, ``version``,
        ``architecture``, ``threading``, ``threads``.
    """
    import numpy  # noqa: F401  (loads numpy's BLAS)
    from threadpoolctl import threadpool_info

    if with_faiss:
        try:
            import faiss  # noqa: F401
        except ImportError:
            pass
    rows = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        path = info.get("filepath") or ""
        owner = ("numpy" if "numpy" in path else "faiss" if "faiss" in path
                 else "scipy" if "scipy" in path else Path(path).name)
        rows.append({"owner": owner, "library": info.get("internal_api"),
                     "version": info.get("version"), "architecture": info.get("architecture"),
                     "threading": info.get("threading_layer"), "threads": info.get("num_threads")})
    return rows


def describe_blas(rows: list[dict]) -> str:
    """One line per library: ``numpy: openblas 0.3.31 (SkylakeX, pthreads, 2 threads)``."""
    rows = sorted(rows, key=lambda r: str(r["owner"]))
    return "; ".join(f"{r['owner']}: {r['library']} {r['version']} ({r['architecture']}, "
                     f"{r['threading']}, {r['threads']} threads)" for r in rows)
