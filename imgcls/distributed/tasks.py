"""Independent tasks of a model selection, run here or on a Dask cluster.

The cross-validation's fold searches and the grid search's fits are
independent pure functions of their inputs and the seed, so running them on
a cluster changes where they run, not what they return: :func:`run_tasks`
yields the same values in the same order either way.  This module imports
nothing from Dask until a client is given, so the selection code can call it
unconditionally.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

__all__ = ["run_tasks", "worker_threads"]


def worker_threads(default=None):
    """Threads of the Dask worker running this code, or ``default`` outside a worker."""
    try:
        from distributed import get_worker
    except ImportError:
        return default
    try:
        return get_worker().state.nthreads
    except (ValueError, AttributeError):  # not inside a worker
        return default


def _on_worker(fn, args, kwargs):
    """Run ``fn`` with BLAS and numba held to the worker's threads."""
    from ..neighbors.search import threads

    with threads(worker_threads()):
        return fn(*args, **kwargs)


def run_tasks(fn: Callable, calls: Sequence[tuple], *, shared: dict | None = None,
              client=None) -> Iterator[Any]:
    """``fn(*args, **shared)`` for each ``args`` in ``calls``, in order.

    Parameters
    ----------
    fn : callable
        A top-level function (Dask ships it by reference).
    calls : sequence of tuple
        Positional arguments of each call (small: indices, names, parameters).
    shared : dict, optional
        Keyword arguments common to every call (the data).  On a cluster they
        are scattered once and each worker fetches them once.
    client : distributed.Client, optional
        None runs the calls here, one after another, as they are consumed.

    Yields
    ------
    The calls' results in the order of ``calls``.  A call's exception is
    raised when its result is reached, as it would be locally.
    """
    shared = dict(shared or {})
    if client is None:
        for args in calls:
            yield fn(*args, **shared)
        return
    scattered = {name: client.scatter(value, hash=False) for name, value in shared.items()}
    futures = [client.submit(_on_worker, fn, tuple(args), scattered, pure=False)
               for args in calls]
    try:
        for fut in futures:
            yield fut.result()
    finally:
        client.cancel(futures)
        client.cancel(list(scattered.values()))
