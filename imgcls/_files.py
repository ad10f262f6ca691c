"""Opening files that may come from strangers: regular files only, never a hang.

A path handed to imgcls (a model file, an image, a data set file) may name a
FIFO, a socket or a device.  Opening a FIFO for reading blocks until a writer
appears, which may be never, and ``/dev/zero`` is endless.  Every reader opens
its input through :func:`open_regular` (or checks a path it must hand to a
library by name with :func:`check_regular`), so this rule has one owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import ImgclsError

__all__ = ["open_regular", "check_regular", "is_regular", "file_kind"]


def file_kind(mode: int) -> str:
    """A human name for the file type in ``st_mode`` ("a FIFO", "a directory", ...)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str | os.PathLike, mode: int, error: type[ImgclsError], what: str):
    return error(f"{path}: {file_kind(mode)}, not a regular {what}")


def check_regular(path: str | os.PathLike, *, error: type[ImgclsError], what: str = "file"
                  ) -> os.stat_result:
    """``os.stat(path)`` (following links), raising ``error`` unless it is a regular file.

    For inputs that must be passed by name to a library; :func:`open_regular`
    is preferred where a file object will do, since it checks the file it opened.

    Raises
    ------
    error
        Missing, unreadable, or not a regular file; the message names ``path``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, st.st_mode, error, what)
    return st


def open_regular(path: str | os.PathLike, *, error: type[ImgclsError], what: str = "file"
                 ) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file.

    The file is opened with ``O_NONBLOCK`` so that a FIFO without a writer
    returns at once instead of blocking; the descriptor is then checked with
    ``fstat`` (the very file opened, no check-then-open race) and switched
    back to blocking reads.

    Parameters
    ----------
    path : str or path-like
    error : ImgclsError subclass
        The type to raise (``DatasetError``, ``ImageError``, ``ModelFileError`` ...).
    what : str
        What the file should be, for the message ("model file", "image").

    Returns
    -------
    f : binary file object (buffered), positioned at the start.

    Raises
    ------
    error
        Missing, unreadable, or not a regular file; the message names ``path``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: a directory, not a regular {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse(path, mode, error, what)
        # F_SETFL changes only the status flags (O_NONBLOCK, O_APPEND, ...), and
        # this descriptor has no other one set: one call clears O_NONBLOCK.
        fcntl.fcntl(fd, fcntl.F_SETFL, 0)
        return os.fdopen(fd, "rb")
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def is_regular(path: str | os.PathLike | Path) -> bool:
    """True when ``path`` exists and is a regular file (after following links)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
