"""Connecting to a Dask cluster, and checking that its workers can run imgcls.

Dask does the transport, scheduling, retries and placement; this module only
turns an address into a :class:`distributed.Client` with a bounded wait and a
one-line error, and refuses workers whose imgcls differs from the client's (a
different search engine could give different answers).
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["CONNECT_TIMEOUT_S", "connect", "check_workers", "require_distributed"]

#: Seconds to wait for a scheduler before giving up: long enough for a scheduler
#: on a busy LAN to answer, short enough that a typo in an address fails fast.
CONNECT_TIMEOUT_S = 10.0


def require_distributed():
    """Import ``distributed``, or say how to install it."""
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ConfigError("Dask distributed is not installed; "
                          "install it with: pip install 'imgcls[distributed]'") from exc
    return distributed


def connect(address: str, timeout: float | None = None):
    """A client for ``address``: ``tcp://HOST:PORT``, or ``local:N`` for a local cluster.

    ``local:N`` starts a :class:`distributed.LocalCluster` of N single-threaded
    worker processes on 127.0.0.1; it is closed together with the client
    (``client.close()`` or leaving a ``with`` block).

    Parameters
    ----------
    address : str
    timeout : float, optional
        Seconds to wait for the scheduler; default :data:`CONNECT_TIMEOUT_S`.

    Returns
    -------
    client : distributed.Client

    Raises
    ------
    ConfigError
        A malformed address, or no scheduler answered within ``timeout``.
    """
    distributed = require_distributed()
    timeout = CONNECT_TIMEOUT_S if timeout is None else float(timeout)
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"--scheduler: expected tcp://HOST:PORT or local:N, got {address!r}")
    address = address.strip()
    if address.startswith("local:"):
        count = address[len("local:"):]
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise ConfigError(f"--scheduler {address}: local:N needs a worker count N in 1..256")
        cluster = distributed.LocalCluster(n_workers=int(count), threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        # the cluster goes with the client: closing one closes both
        client._imgcls_cluster = cluster
        _close = client.close

        def close(*args, **kwargs):
            try:
                return _close(*args, **kwargs)
            finally:
                cluster.close()

        client.close = close
        return client
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                          f"({reason})") from exc


def _worker_version():
    from .._version import __version__
    return __version__


def check_workers(client) -> dict:
    """Each worker's thread count, after checking it runs this imgcls version.

    Returns
    -------
    nthreads : dict
        Worker address -> threads.

    Raises
    ------
    ConfigError
        No workers, a worker that cannot import imgcls, or one whose imgcls
        version differs from the client's (both versions named).
    """
    from .._version import __version__

    nthreads = dict(client.nthreads())
    if not nthreads:
        raise ConfigError(f"the Dask cluster at {client.scheduler.address} has no workers")
    try:
        versions = client.run(_worker_version)
    except ImportError as exc:
        raise ConfigError(f"a Dask worker cannot import imgcls ({exc}); install imgcls "
                          f"{__version__} on every worker") from exc
    for worker, version in sorted(versions.items()):
        if version != __version__:
            raise ConfigError(f"Dask worker {worker} runs imgcls {version}, this client runs "
                              f"imgcls {__version__}; install the same version everywhere")
    return nthreads
