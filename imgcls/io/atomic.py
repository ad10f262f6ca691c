"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file imgcls writes for a user (model files, reports, figures) goes through
here.  The data go to a temporary file *in the target directory* (so that the
final ``os.replace`` is a rename within one file system, which POSIX and Windows
make atomic), are flushed and fsync'ed, and only then replace the target.  On
any error the temporary file is removed and the target is left as it was.

What the user set up is kept:

* a **symbolic link** stays a link: the file it points to (followed through
  every link, relative or absolute) is what gets replaced, atomically, with the
  temporary file next to it; a dangling link gets its target created;
* an **existing file keeps its permission bits** (``0o600`` stays private: a
  kNN model holds its whole training set) and, where the user may, its group;
  setuid/setgid/sticky bits are dropped, as any write would.  A new file gets
  ``0o666 & ~umask``, like any other new file.
"""

from __future__ import annotations

import contextlib
import os
import stat
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


def _resolve(path: Path, what: str) -> Path:
    """The file a write to ``path`` must replace: ``path``, or a symlink's final target."""
    if not os.path.islink(path):
        return path
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:  # a dangling link: create what it points to
        return Path(os.path.realpath(path))
    except OSError as exc:  # ELOOP: a cycle of links
        raise _reword(exc, f"cannot write {what} {str(path)!r}: cannot follow the symbolic "
                           f"link ({exc.strerror or exc})") from exc


def _open_temp(path: Path, what: str) -> tuple[int, str]:
    """A temporary file next to ``path`` (already resolved), with the mode it should end with."""
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(2, f"cannot write {what} {str(path)!r}: directory "
                                   f"{str(directory)!r} does not exist or is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _reword(exc, f"cannot write {what} {str(path)!r}: directory {str(directory)!r} "
                           f"is not writable ({exc.strerror or exc})") from exc
    try:
        old = os.stat(path)
    except OSError:
        old = None
    if old is not None and stat.S_ISREG(old.st_mode):
        # keep the permission bits (not setuid/setgid/sticky), and the group if allowed
        mode = stat.S_IMODE(old.st_mode) & 0o777
        with contextlib.suppress(OSError, AttributeError):
            os.chown(tmp, -1, old.st_gid)
    else:
        mode = 0o666 & ~_current_umask()
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, what: str = "file") -> Iterator[BinaryIO]:
    """Open a binary file that replaces ``path`` atomically when the block ends cleanly.

    Parameters
    ----------
    path : str or path-like
        The final file.  Its directory must exist.  A symbolic link is
        followed: its target is replaced and the link kept.  An existing file
        keeps its permission bits.
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
        The directory does not exist or cannot be written, or ``path`` is a
        cycle of symbolic links; the message names it.
    """
    path = _resolve(Path(path), what)
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
    Links and permission bits are kept as in :func:`atomic_write`.

    Parameters
    ----------
    files : mapping of path -> bytes
    what : str
        What the files are, for error messages.

    Returns
    -------
    paths : list of Path, as given, in the order given.
    """
    temps: list[tuple[str, Path]] = []
    try:
        for target, data in files.items():
            target = _resolve(Path(target), what)
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
    return [Path(target) for target in files]
