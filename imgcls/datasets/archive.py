"""Safe reading and extraction of tar archives.

Every member is checked before anything is written: absolute paths, ``..``
components, symbolic and hard links, devices, FIFOs and anything else that is
not a plain file or folder make the whole archive a :class:`FormatError`.
Extraction goes into a temporary folder beside the destination and is moved
into place only when complete, so an interrupted extraction never leaves a
folder that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import FormatError


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
    if member.isdev() or member.isfifo():
        raise FormatError(f"{archive}: member {name!r} is a device or FIFO; refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise FormatError(f"{archive}: member {name!r} is not a plain file or folder; "
                          f"refusing to extract")


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FormatError(f"{archive}: not a readable tar archive ({exc})") from None


def _members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:  # truncated/corrupt gzip or tar
        raise FormatError(f"{archive}: corrupt or truncated tar archive ({exc})") from None
    for m in members:
        check_member(m, archive)
    return members


def read_members(archive: str | Path, names: Iterable[str]) -> dict[str, bytes]:
    """Read some plain files of an archive into memory (nothing is written to disk).

    Parameters
    ----------
    archive : str or Path
    names : iterable of str
        Member names wanted, e.g. ``"cifar-10-batches-bin/test_batch.bin"``.

    Returns
    -------
    dict name -> bytes
        Only the wanted names that the archive holds.
    """
    archive, wanted = Path(archive), set(names)
    out: dict[str, bytes] = {}
    # Stream mode: one pass over the (gzipped) archive; a bad member anywhere
    # still rejects the whole archive, since the loop sees every member.
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                check_member(member, archive)
                if member.name in wanted and member.isfile():
                    f = tar.extractfile(member)
                    out[member.name] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FormatError(f"{archive}: corrupt or truncated tar archive ({exc})") from None
    return out


def safe_extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract every member of ``archive`` into folder ``dest``, all or nothing.

    The archive's top-level entries are extracted into a temporary folder inside
    ``dest`` and then renamed into ``dest`` one by one (an existing entry of the
    same name is replaced).

    Returns
    -------
    list of Path
        The top-level entries created in ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest))
    try:
        with _open(archive) as tar:
            members = _members(tar, archive)
            try:
                # The "data" filter repeats the checks above in the standard library.
                tar.extractall(tmp, members=members, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise FormatError(f"{archive}: extraction failed ({exc})") from None
        created = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
            created.append(target)
        return created
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
