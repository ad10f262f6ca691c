"""A guard for tests that hand a FIFO to a reader: a regression fails, never hangs."""

from __future__ import annotations

import os
import threading

import pytest

#: Seconds a reader may take before it counts as blocked on a FIFO.
GRACE_S = 2.0


@pytest.fixture
def unblock_fifos():
    """Open every FIFO in the yielded list for writing, repeatedly, while the test runs.

    A reader blocked on one of them then sees end-of-file and returns (so the
    test fails on its assertions instead of hanging the suite), and the
    fixture fails the test at teardown.
    """
    fifos, unblocked, done = [], [], threading.Event()

    def loop():
        done.wait(GRACE_S)  # longer than any reader that does not block needs
        while not done.is_set():
            for fifo in fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    unblocked.append(fifo)
                except OSError:  # ENXIO: nobody is reading it, as it should be
                    pass
            done.wait(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield fifos
    done.set()
    thread.join()
    assert not unblocked, f"a reader blocked on {unblocked[0]}"
