"""Cache directory, SHA-256 checks and atomic, resumable downloads from mirrors.

A download streams into ``<file>.part`` beside the final name, resumes an
existing ``.part`` with an HTTP ``Range`` request (and restarts from zero when
the server ignores it), checks the SHA-256 of the complete file and only then
``os.replace``-s it to the final name.  So the final name only ever holds a
verified file: an interrupted download leaves at most a ``.part``, which is
either resumed or thrown away by the next attempt.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .._progress import bar
from ..errors import ChecksumError, DownloadError
from .locations import ENV_VAR, cache_dir  # noqa: F401  (re-exported)

CHUNK = 1 << 20  # 1 MiB: large enough for speed, small enough for a smooth bar
TIMEOUT = 30.0  # seconds without data before a mirror counts as failed
USER_AGENT = "imgcls-dataset-downloader"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, size and SHA-256 as served by the mirrors.

    ``raw_sha256`` is the SHA-256 of the decompressed content for gzipped
    files (None when unknown), so that a user's own copy, recompressed or
    decompressed, can be verified too.
    """

    filename: str
    sha256: str
    size: int | None = None
    raw_sha256: str | None = None


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` naming ``path`` when its SHA-256 is not ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise ChecksumError(f"{path}: SHA-256 is {got}, expected {expected} — the file is "
                            f"corrupt or not the official release; delete it and download again")


class _Failure(Exception):
    """One mirror attempt failed (reason in the message); the caller tries on."""


class _Cut(_Failure):
    """The transfer stopped early; the ``.part`` holds what arrived and may be resumed."""


def download(remote: RemoteFile, mirrors: Sequence[str], dest_dir: str | Path,
             progress: bool | None = None, retries: int = 2) -> Path:
    """Fetch ``remote`` into ``dest_dir`` from the first mirror that delivers it intact.

    Parameters
    ----------
    remote : RemoteFile
        File name, expected SHA-256 and (optionally) size.
    mirrors : sequence of str
        Base URLs; the file's URL is ``mirror.rstrip("/") + "/" + filename``.
    dest_dir : str or Path
        Created if missing.  On success it holds ``filename``; a failed attempt
        leaves at most ``filename.part`` (a cut transfer, kept for resuming).
    progress : bool, optional
        Draw a byte progress bar (default: when stderr is a terminal).
    retries : int, default 2
        Extra attempts on one mirror after a cut transfer that made progress
        (each resumes with a ``Range`` request).

    Returns
    -------
    Path
        The verified file.

    Raises
    ------
    DownloadError
        Every mirror failed; the message lists each mirror's failure.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    part = dest_dir / (remote.filename + ".part")
    if not mirrors:
        raise DownloadError(f"{final}: no mirror is known for {remote.filename}")
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + remote.filename
        for attempt in range(retries + 1):
            before = part.stat().st_size if part.exists() else 0
            try:
                _fetch(url, part, remote, progress)
            except _Cut as exc:
                now = part.stat().st_size if part.exists() else 0
                if now > before and attempt < retries:
                    continue  # resume from where it stopped
                failures.append(f"{url}: {exc}")
                break
            except _Failure as exc:
                failures.append(f"{url}: {exc}")
                break
            got = sha256_file(part)
            if got != remote.sha256:
                part.unlink(missing_ok=True)  # never resume from bytes that proved wrong
                failures.append(f"{url}: SHA-256 mismatch (got {got}, expected {remote.sha256})")
                break
            os.replace(part, final)
            return final
    raise DownloadError(f"{final}: could not download {remote.filename} from any mirror:\n  "
                        + "\n  ".join(failures))


def _fetch(url: str, part: Path, remote: RemoteFile, progress: bool | None) -> None:
    """Stream ``url`` into ``part``, resuming when ``part`` already holds bytes."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
        offset = 0
    if remote.size is not None and offset == remote.size:
        return  # complete already (e.g. interrupted between download and rename)
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # "Range not satisfiable": the .part is as long as the file or longer;
            # the checksum decides whether it is good.
            return
        raise _Failure(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Failure(f"{getattr(exc, 'reason', exc)}") from None
    with response:
        status = getattr(response, "status", 200)
        if offset and status != 206:
            offset = 0  # the server ignored Range and sends the whole file: restart
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = remote.size if remote.size is not None else (
            offset + expected if expected is not None else None)
        received = 0
        too_long = False
        with open(part, "ab" if offset else "wb") as f, \
                bar(f"{remote.filename}", total, unit="bytes",
                    disable=None if progress is None else not progress) as advance:
            advance(offset)
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    advance(len(chunk))
                    if remote.size is not None and offset + received > remote.size:
                        too_long = True
                        break
            except (OSError, ValueError) as exc:  # reset connection, IncompleteRead, timeout
                f.flush()
                raise _Cut(f"transfer cut after {offset + received} bytes ({exc})") from None
            f.flush()
            os.fsync(f.fileno())
    if too_long:
        part.unlink(missing_ok=True)
        raise _Failure(f"server sent more than the expected {remote.size} bytes")
    if expected is not None and received < expected:
        raise _Cut(f"transfer cut after {offset + received} of {offset + expected} bytes")
    if remote.size is not None and offset + received < remote.size:
        if expected is None:  # no Content-Length: a short body may be a cut connection
            raise _Cut(f"transfer cut after {offset + received} of {remote.size} bytes")
        # A complete response of the wrong size (e.g. an HTML error page): not our file.
        part.unlink(missing_ok=True)
        raise _Failure(f"wrong size: got a complete response of {offset + received} bytes, "
                       f"the file has {remote.size}")


def ensure_files(files: Sequence[RemoteFile], mirrors: Sequence[str], dest_dir: Path,
                 progress: bool | None = None) -> list[Path]:
    """Download each missing file of ``files`` into ``dest_dir``; return all paths."""
    paths = []
    for remote in files:
        path = Path(dest_dir) / remote.filename
        if not path.exists():
            download(remote, mirrors, dest_dir, progress=progress)
        paths.append(path)
    return paths


__all__ = ["RemoteFile", "cache_dir", "sha256_file", "verify_file", "download", "ensure_files",
           "ChecksumError", "DownloadError"]
