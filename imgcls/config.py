"""Global settings, in the manner of ``sklearn.set_config``.

``working_memory`` (MiB) bounds the size of temporary blocks (e.g. a block of
query-by-training distances in the neighbour search).  An estimator parameter
``working_memory=None`` means "use the global value".
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

_DEFAULTS: dict[str, Any] = {
    # MiB for one temporary block; a few hundred MiB keeps peak memory modest
    # while blocks stay large enough for BLAS/SIMD to run at full speed.
    "working_memory": 256,
    # Show progress bars on long work (only drawn when stderr is a terminal).
    "show_progress": True,
}
_local = threading.local()


def _config() -> dict[str, Any]:
    if not hasattr(_local, "config"):
        _local.config = dict(_DEFAULTS)
    return _local.config


#: Largest ``working_memory`` accepted, in MiB (1 PiB).  No machine has that much
#: memory, and block sizes derived from it (bytes = MiB * 2**20) stay exact,
#: finite numbers; an unbounded value (``1e308``) would make them infinite.
MAX_WORKING_MEMORY = 2**30


def budget_bytes(working_memory: float | None = None) -> float:
    """Bytes of ``working_memory`` MiB (None: the global ``working_memory`` setting).

    The one conversion every memory-bounded block size starts from.

    Raises
    ------
    ValueError
        ``working_memory`` outside (0, ``MAX_WORKING_MEMORY``].
    """
    wm = _config()["working_memory"] if working_memory is None else working_memory
    if not 0 < wm <= MAX_WORKING_MEMORY:
        raise ValueError(f"working_memory must be a number of MiB in (0, {MAX_WORKING_MEMORY}], "
                         f"got {wm!r}")
    return float(wm) * 2**20


def get_config() -> dict[str, Any]:
    """Return a copy of the current settings."""
    return dict(_config())


def set_config(working_memory: float | None = None, show_progress: bool | None = None) -> None:
    """Change global settings.

    Parameters
    ----------
    working_memory : float, optional
        Budget in MiB for one temporary block, in (0, ``MAX_WORKING_MEMORY``].
    show_progress : bool, optional
        Whether long operations draw progress bars.
    """
    cfg = _config()
    if working_memory is not None:
        if not 0 < working_memory <= MAX_WORKING_MEMORY:
            raise ValueError(f"working_memory must be a number of MiB in (0, {MAX_WORKING_MEMORY}], "
                             f"got {working_memory!r}")
        cfg["working_memory"] = float(working_memory)
    if show_progress is not None:
        cfg["show_progress"] = bool(show_progress)


@contextlib.contextmanager
def config_context(**kwargs: Any) -> Iterator[None]:
    """Temporarily change settings: ``with config_context(working_memory=64): ...``."""
    old = get_config()
    set_config(**kwargs)
    try:
        yield
    finally:
        _config().clear()
        _config().update(old)
