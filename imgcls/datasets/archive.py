"""Safe reading and extraction of tar archives (plain, gzip, bzip2 or xz).

Every member is checked before it is read or written: absolute paths, ``..``
components, symbolic and hard links, devices, FIFOs and anything else that is
not a plain file or folder make the whole archive a :class:`FormatError`, as do
sizes over the caps below.  The archive is read in one streaming pass, and the
decompressed stream itself is capped, so a small archive cannot make imgcls
decompress, hold or write more than the caps allow.

:func:`safe_extract` is all or nothing: it extracts into a fresh temporary
folder beside the entries it creates and moves them into place (``rename``)
only when every member has been extracted; on any failure the destination is
exactly as before and no temporary folder is left.

The caps derive from the largest archives imgcls reads, the CIFAR releases
(``cifar-{10,100}-{binary,python}.tar.gz``, ~170 MB each): each holds ~186 MB
of members, the largest being CIFAR-100's python ``train`` batch (~155 MB).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from .._files import open_regular
from ..errors import DatasetError, FormatError

__all__ = ["safe_extract", "read_members", "check_member",
           "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_MEMBERS", "MAX_HEADER_BYTES"]

#: Most bytes one member may have: 256 MiB, above the ~155 MB of CIFAR-100's
#: python ``train`` batch, and the same as the most the CIFAR python reader
#: accepts for one file (``restricted_pickle.MAX_FILE_BYTES``).
MAX_MEMBER_BYTES = 1 << 28
#: Most bytes of all members together: 512 MiB, above the ~186 MB of every
#: CIFAR archive and a CIFAR-100 python release re-pickled by Python 3 (~320 MB).
MAX_TOTAL_BYTES = 1 << 29
#: Most members: the CIFAR archives have at most 10.
MAX_MEMBERS = 1000
#: Most bytes of tar headers in the decompressed stream on top of the members'
#: data: 512-byte headers, GNU long names and pax records of MAX_MEMBERS members.
MAX_HEADER_BYTES = 4 << 20

# Decompressed data at the start of each supported compression (tar itself
# has no magic at byte 0).
_MAGIC = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
          (b"BZh", lambda f: bz2.BZ2File(f, "rb")),
          (b"\xfd7zXZ\x00", lambda f: lzma.LZMAFile(f, "rb")))
# What a corrupt or truncated archive raises while it is read.  zlib.error and
# LZMAError are not OSErrors; ValueError covers undecodable names.
_CORRUPT = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)
# What reading the (decompressed) stream raises on corrupt or truncated data.
_DECOMPRESSING = (OSError, EOFError, zlib.error, lzma.LZMAError)
# Renames, a module attribute so that tests can make one fail part-way.
_rename = os.rename


def check_member(member: tarfile.TarInfo, archive: str | Path) -> None:
    """Raise :class:`FormatError` unless ``member`` is a plain file or folder inside the archive."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or PurePosixPath(name).is_absolute():
        raise FormatError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in parts:
        raise FormatError(f"{archive}: member {name!r} contains '..'; refusing to extract")
    if member.issym() or member.islnk():
        raise FormatError(f"{archive}: member {name!r} is a link (to {member.linkname!r}); "
                          f"refusing to extract")
    if member.issparse():
        # A GNU sparse member's data size is not its ``size`` (the expanded one):
        # no archive imgcls reads holds one, and its stored size can send the
        # stream reader seeking towards 2**63 bytes.
        raise FormatError(f"{archive}: member {name!r} is a sparse file; refusing to extract")
    if member.isdev() or member.isfifo():
        raise FormatError(f"{archive}: member {name!r} is a device or FIFO; refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise FormatError(f"{archive}: member {name!r} is not a plain file or folder; "
                          f"refusing to extract")


class _Capped:
    """A read-only stream that raises :class:`FormatError` past ``limit`` bytes."""

    def __init__(self, raw, limit: int, archive: Path):
        self._raw, self._left, self._archive = raw, limit, archive

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        try:
            data = self._raw.read(want)
        except _DECOMPRESSING as exc:  # so that only writing can raise OSError
            raise FormatError(f"{self._archive}: corrupt or truncated tar archive "
                              f"({_detail(exc)})") from None
        self._left -= len(data)
        if self._left < 0:
            raise FormatError(
                f"{self._archive}: decompresses to more than "
                f"{MAX_TOTAL_BYTES + MAX_HEADER_BYTES} bytes (MAX_TOTAL_BYTES + "
                f"MAX_HEADER_BYTES); refusing to read it")
        return data


class _Members:
    """The members of ``archive`` in one streaming pass, each checked before it is read."""

    def __init__(self, archive: Path):
        self.archive = archive
        self._file = open_regular(archive, error=FormatError, what="archive")
        try:
            magic = self._file.read(6)
            self._file.seek(0)
            opener = next((o for m, o in _MAGIC if magic.startswith(m)), None)
            self._stream = self._file if opener is None else opener(self._file)
            self.tar = tarfile.open(fileobj=_Capped(self._stream,
                                                    MAX_TOTAL_BYTES + MAX_HEADER_BYTES, archive),
                                    mode="r|")
        except FormatError:
            self.close()
            raise
        except _CORRUPT as exc:
            self.close()
            raise FormatError(f"{archive}: not a readable tar archive ({_detail(exc)})") from None

    def __iter__(self):
        count = total = 0
        for member in self.tar:
            check_member(member, self.archive)
            count += 1
            total += member.size
            if count > MAX_MEMBERS:
                raise FormatError(f"{self.archive}: more than {MAX_MEMBERS} members "
                                  f"(MAX_MEMBERS); refusing to read it")
            if member.size > MAX_MEMBER_BYTES:
                raise FormatError(f"{self.archive}: member {member.name!r} has {member.size} "
                                  f"bytes, over MAX_MEMBER_BYTES={MAX_MEMBER_BYTES}; "
                                  f"refusing to read it")
            if total > MAX_TOTAL_BYTES:
                raise FormatError(f"{self.archive}: members hold more than MAX_TOTAL_BYTES="
                                  f"{MAX_TOTAL_BYTES} bytes; refusing to read it")
            # Where tarfile will look for the next header, whatever header field
            # (size, pax or GNU extension) put it there: its stream reader seeks
            # forward by reading, with no end-of-data check, so a position past
            # what the stream may hold would be read towards for ever.
            if self.tar.offset > MAX_TOTAL_BYTES + MAX_HEADER_BYTES:
                raise FormatError(f"{self.archive}: member {member.name!r} claims data up to "
                                  f"byte {self.tar.offset}, past the "
                                  f"{MAX_TOTAL_BYTES + MAX_HEADER_BYTES} an archive may hold; "
                                  f"refusing to read it")
            yield member

    def close(self) -> None:
        for f in (getattr(self, "tar", None), getattr(self, "_stream", None), self._file):
            if f is not None:
                with contextlib.suppress(*_CORRUPT):
                    f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _detail(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_members(archive: str | Path, names: Iterable[str],
                 max_sizes: Mapping[str, int] | None = None) -> dict[str, bytes]:
    """Read some plain files of an archive into memory (nothing is written to disk).

    Parameters
    ----------
    archive : str or Path
        A tar archive, plain or gzip/bzip2/xz-compressed (a regular file).
    names : iterable of str
        Member names wanted, e.g. ``"cifar-10-batches-bin/test_batch.bin"``.
    max_sizes : mapping name -> int, optional
        The most bytes a wanted member may have (e.g. what its format allows),
        checked on its header before it is read; :data:`MAX_MEMBER_BYTES` for
        names not in it.

    Returns
    -------
    dict name -> bytes
        Only the wanted names that the archive holds.

    Raises
    ------
    FormatError
        The archive is missing, not a regular file, corrupt or truncated, holds
        an unsafe member anywhere (the loop sees every member), or is over
        :data:`MAX_MEMBER_BYTES`, :data:`MAX_TOTAL_BYTES` or
        :data:`MAX_MEMBERS`, or a wanted member is over its ``max_sizes``;
        the message names the archive and the cause.
    """
    archive, wanted, limits = Path(archive), set(names), dict(max_sizes or {})
    out: dict[str, bytes] = {}
    try:
        with _Members(archive) as members:
            for member in members:
                if member.name in wanted and member.isfile():
                    limit = limits.get(member.name)
                    if limit is not None and member.size > limit:
                        raise FormatError(f"{archive}: member {member.name!r} has {member.size} "
                                          f"bytes, more than the {limit} its format allows")
                    f = members.tar.extractfile(member)
                    data = f.read() if f is not None else b""
                    if len(data) != member.size:
                        raise FormatError(f"{archive}: member {member.name!r} is truncated")
                    out[member.name] = data
    except FormatError:
        raise
    except _CORRUPT as exc:
        raise FormatError(f"{archive}: corrupt or truncated tar archive ({_detail(exc)})") from None
    return out


def _staging(dest: Path) -> tuple[Path, list[Path]]:
    """A fresh temporary folder on ``dest``'s file system, and the folders made for it."""
    made: list[Path] = []
    if os.path.lexists(dest) and not dest.is_dir():
        raise DatasetError(f"{dest}: not a folder; cannot extract into it")
    home = dest if dest.is_dir() else dest.parent
    missing = [p for p in (home, *home.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except OSError as exc:
            _remove_made(made)
            raise DatasetError(f"{dest}: cannot create {folder} ({exc.strerror or exc})") from None
        made.append(folder)
    prefix = ".extracting-" if home == dest else f".{dest.name}.extracting-"
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=home)), made
    except OSError as exc:
        _remove_made(made)
        raise DatasetError(f"{dest}: cannot create a temporary folder in {home} "
                           f"({exc.strerror or exc})") from None


def _remove_made(made: list[Path]) -> None:
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _commit(staged: Path, dest: Path) -> list[Path]:
    """Move the entries of ``staged`` into ``dest``, replacing entries of the same name.

    All or nothing: existing entries are first renamed into a temporary
    folder, and on a failure every rename is undone.
    """
    if not dest.is_dir():  # dest did not exist: staged is its sibling
        _rename(staged, dest)
        return sorted(dest.iterdir())
    entries = sorted(p.name for p in staged.iterdir())
    replaced = [n for n in entries if os.path.lexists(dest / n)]
    aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=dest)) if replaced else None
    done: list[tuple[Path, Path]] = []
    try:
        for name in replaced:
            _rename(dest / name, aside / name)
            done.append((dest / name, aside / name))
        for name in entries:
            _rename(staged / name, dest / name)
            done.append((staged / name, dest / name))
    except OSError as exc:
        for src, dst in reversed(done):
            _rename(dst, src)
        if aside is not None:
            aside.rmdir()
        raise DatasetError(f"{dest}: cannot move the extracted entries into place "
                           f"({exc.strerror or exc}); nothing was changed") from None
    if aside is not None:
        shutil.rmtree(aside)
    return [dest / n for n in entries]


def safe_extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract every member of ``archive`` into folder ``dest``, all or nothing.

    The members are extracted into a fresh temporary folder (inside ``dest``,
    or beside it when ``dest`` does not exist yet); only when all of them are
    there are the archive's top-level entries renamed into ``dest``, an
    existing entry of the same name being replaced.

    Parameters
    ----------
    archive : str or Path
        A tar archive, plain or gzip/bzip2/xz-compressed (a regular file).
    dest : str or Path
        The folder to extract into (created with its parents if missing).

    Returns
    -------
    list of Path
        The top-level entries created in ``dest``, sorted.

    Raises
    ------
    FormatError
        The archive is unreadable, unsafe or over the caps (as for
        :func:`read_members`), or a member would replace the archive itself.
    DatasetError
        ``dest`` is not a folder, or extraction or the final renames failed
        (e.g. a full disk).  In every case ``dest`` is as before and no
        temporary folder is left.
    """
    archive, dest = Path(archive), Path(dest)
    staged, made = _staging(dest)
    try:
        try:
            with _Members(archive) as members:
                for member in members:
                    # The "data" filter repeats the checks above in the
                    # standard library.  Folders keep default permissions, so
                    # that a read-only folder cannot block its own files.
                    members.tar.extract(member, staged, set_attrs=not member.isdir(),
                                        filter="data")
        except FormatError:
            raise
        except (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError) as exc:
            raise FormatError(f"{archive}: corrupt or truncated tar archive "
                              f"({_detail(exc)})") from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{archive}: extraction into {dest} failed "
                               f"({_detail(exc)})") from None
        own = archive.resolve()
        for entry in staged.iterdir():
            if (dest / entry.name).resolve() == own:
                raise FormatError(f"{archive}: member {entry.name!r} would replace the archive "
                                  f"itself; refusing to extract")
        created = _commit(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        _remove_made(made)
        raise
    shutil.rmtree(staged, ignore_errors=True)
    return created
