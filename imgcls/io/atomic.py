"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file imgcls writes for a user (model files, reports, figures) goes through
here.  The data go to a temporary file *in the target directory* (so that the
final ``os.replace`` is a rename within one file system, which POSIX and Windows
make atomic), are flushed and fsync'ed, and only then replace the target.  On
any error the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping

__all__ = ["atomic_write", "write_bytes_atomic", "write_files_atomic"]

_umask: int | None = None


def _current_umask() -> int:
    # mkstemp creates files with mode 0o600; a report or model file should get
    # the permissions any other new file would (0o666 minus the umask).  The
    # umask can only be read by setting it, so read it once, from /proc when
    # possible (no window in which another thread sees a changed umask).
    global _umask
    if _umask is None:
        with contextlib.suppress(OSError, ValueError):  # no /proc: the fallback below
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _umask = int(line.split()[1], 8)
                        break
        if _umask is None:
            old = os.umask(0o022)
            os.umask(old)
            _umask = old
    return _umask


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reword(exc: OSError, message: str) -> OSError:
    """The same kind of OSError (PermissionError, FileNotFoundError...) with our message."""
    new = type(exc)(exc.errno, message) if exc.errno is not None else type(exc)(message)
    return new


def _open_temp(path: Path, what: str) -> tuple[int, str]:
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(2, f"cannot write {what} {str(path)!r}: directory "
                                   f"{str(directory)!r} does not exist or is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _reword(exc, f"cannot write {what} {str(path)!r}: directory {str(directory)!r} "
                           f"is not writable ({exc.strerror or exc})") from exc
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~_current_umask())
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, what: str = "file") -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` atomically when the block ends cleanly.

    Parameters
    ----------
    path : str or path-like
        The final file.  Its directory must exist.
    what : str
        What the file is, for error messages ("model file", "report" ...).

    Yields
    ------
    f : binary file object
        Write the content to it.  If the ``with`` block raises, the temporary
        file is deleted and ``path`` keeps its old content (or stays absent).

    Raises
    ------
    OSError
        The directory does not exist or cannot be written; the message names it.
    """
    path = Path(path)
    fd, tmp = _open_temp(path, what)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _reword(exc, f"cannot write {what} {str(path)!r}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically; returns ``Path(path)``."""
    with atomic_write(path, what=what) as f:
        f.write(data)
    return Path(path)


def write_files_atomic(files: Mapping[str | os.PathLike, bytes], *, what: str = "file") -> list[Path]:
    """Write several files so that none is replaced unless all could be written.

    Every file is first written in full to its own temporary file; only when all
    of them are on disk are they renamed into place, one after the other.  A
    failure while writing leaves every target untouched and no temporary file.

    Parameters
    ----------
    files : mapping of path -> bytes
    what : str
        What the files are, for error messages.

    Returns
    -------
    paths : list of Path, in the order given.
    """
    temps: list[tuple[str, Path]] = []
    try:
        for target, data in files.items():
            target = Path(target)
            fd, tmp = _open_temp(target, what)
            temps.append((tmp, target))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, target in temps:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _reword(exc, f"cannot write {what} {str(target)!r}: "
                                   f"{exc.strerror or exc}") from exc
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for directory in {target.parent for _, target in temps}:
        _fsync_dir(directory)
    return [target for _, target in temps]
