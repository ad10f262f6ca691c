"""Check the SHA-256 of a downloadable data set's files present on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, DatasetError
from . import resources
from .base import get_spec
from .download import RemoteFile, sha256_file
from .idx import sha256_maybe_gzip
from .locations import find_file, resolve_root


def _check(path: Path, remote: RemoteFile) -> tuple[str, str]:
    """``(status, detail)`` for one file: ok / mismatch / unverifiable.

    A copy that is not the served file is hashed piece by piece as it is
    decompressed, never held, and no further than the official content's size
    (``remote.raw_size``); a file that cannot be read (not a regular file,
    corrupt gzip, too long) is a mismatch, with the reason.
    """
    try:
        if path.name == remote.filename:  # the file as the mirrors serve it
            got = sha256_file(path)
            if got == remote.sha256:
                return "ok", "SHA-256 of the served file"
            if remote.raw_sha256 is None:
                return "mismatch", f"SHA-256 {got}, expected {remote.sha256}"
        elif remote.raw_sha256 is None:
            return "unverifiable", "no official SHA-256 of this form of the file is known"
        got, _ = sha256_maybe_gzip(path, remote.raw_size,
                                   f"the size of the official {remote.filename[:-3]}")
    except DatasetError as exc:  # FormatError included
        return "mismatch", str(exc)
    if got == remote.raw_sha256:
        return "ok", "SHA-256 of the content"
    return "mismatch", f"SHA-256 of the content {got}, expected {remote.raw_sha256}"


def verify_dataset(name: str, root: str | Path | None = None) -> list[dict[str, Any]]:
    """The checksum status of each official file of ``name`` in ``root`` (or the cache dir).

    Parameters
    ----------
    name : str
        A downloadable data set: mnist, fashion-mnist, cifar10, cifar100.
    root : str or Path, optional
        Folder holding the files; default: the cache dir's ``<name>/``.

    Returns
    -------
    list of dict
        One per official file: ``file``, ``path`` (None when absent),
        ``status`` (``ok``, ``mismatch``, ``missing``, ``unverifiable``),
        ``detail``.  Either CIFAR release counts: an absent alternative archive
        is reported as ``missing`` too.
    """
    spec, _ = get_spec(name)
    if not spec.downloadable:
        raise ConfigError(f"{name}: has no official files to verify (only "
                          f"{', '.join(resources.FILES)} do)")
    folder = resolve_root(spec.name, root)
    rows = []
    for remote in resources.FILES[spec.name] + resources.ALTERNATIVE_FILES.get(spec.name, []):
        if remote.filename.endswith("-ubyte.gz"):
            path = find_file(folder, remote.filename[:-3])
        else:
            path = folder / remote.filename if (folder / remote.filename).is_file() else None
        if path is None:
            rows.append({"file": remote.filename, "path": None, "status": "missing",
                         "detail": f"not in {folder}"})
            continue
        status, detail = _check(path, remote)
        rows.append({"file": remote.filename, "path": str(path), "status": status,
                     "detail": detail})
    return rows
