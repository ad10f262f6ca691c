"""One way to draw progress bars, shared by every long operation.

Bars go to stderr through rich and are only drawn when stderr is a terminal and
``imgcls.set_config(show_progress=True)`` (the default), so tests, pipes and CI
logs stay clean.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterable, Iterator, TypeVar

from .config import get_config

T = TypeVar("T")


def progress_enabled(disable: bool | None = None) -> bool:
    if disable is not None:
        return not disable
    return bool(get_config()["show_progress"]) and sys.stderr.isatty()


def track(iterable: Iterable[T], description: str, total: float | None = None,
          disable: bool | None = None) -> Iterator[T]:
    """Iterate over ``iterable`` while drawing a bar labelled ``description``."""
    if not progress_enabled(disable):
        yield from iterable
        return
    from rich.progress import track as rich_track

    yield from rich_track(iterable, description=description, total=total, transient=True,
                          console=_console())


@contextlib.contextmanager
def bar(description: str, total: float | None, unit: str = "items",
        disable: bool | None = None):
    """A bar advanced by hand: ``with bar("download", n, unit="bytes") as advance: advance(k)``.

    ``total`` may be None when the size is unknown (an indeterminate bar);
    ``unit="bytes"`` shows sizes and transfer speed, anything else counts items.
    """
    if not progress_enabled(disable):
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress,
                               TextColumn, TimeRemainingColumn, TransferSpeedColumn)

    counts = ((DownloadColumn(), TransferSpeedColumn()) if unit == "bytes"
              else (MofNCompleteColumn(),))
    with Progress(TextColumn("{task.description}"), BarColumn(), *counts,
                  TimeRemainingColumn(), transient=True, console=_console()) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)


def _console():
    from rich.console import Console

    return Console(stderr=True)
