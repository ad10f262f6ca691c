"""One way for tests to measure what a call allocates: tracemalloc's peak.

tracemalloc traces Python objects and numpy buffers (even ``np.empty`` pages
never touched), so it shows an allocation a size check should have prevented.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from typing import Iterator


class Peak:
    """Filled in when the ``traced_peak`` block ends."""

    bytes: int = 0


@contextlib.contextmanager
def traced_peak() -> Iterator[Peak]:
    """Measure the peak of traced memory inside the block, above what was traced at its start.

    Works whether or not tracing was already on (it is then left on).

    Yields
    ------
    peak : Peak
        ``peak.bytes`` holds the result once the block has ended (also when it raised).
    """
    peak = Peak()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()


def call_peak(fn) -> tuple[BaseException | None, int]:
    """Run ``fn()``; return (the exception it raised or None, peak traced bytes)."""
    with traced_peak() as peak:
        try:
            fn()
            raised = None
        except Exception as exc:  # noqa: BLE001 - returned for the test to check
            raised = exc
    return raised, peak.bytes
