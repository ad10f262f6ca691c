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
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from .._files import open_regular
from .._progress import bar
from ..errors import ChecksumError, DatasetError, DownloadError, FormatError
from .locations import ENV_VAR, cache_dir  # noqa: F401  (re-exported)

CHUNK = 1 << 20  # 1 MiB: large enough for speed, small enough for a smooth bar
TIMEOUT = 30.0  # seconds without data before a mirror counts as failed
USER_AGENT = "imgcls-dataset-downloader"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, size and SHA-256 as served by the mirrors.

    ``raw_sha256`` and ``raw_size`` are the SHA-256 and the length in bytes of
    the decompressed content of a gzipped file (None when unknown), so that a
    user's own copy, recompressed or decompressed, can be verified, and so that
    no copy is ever decompressed past the official size.
    """

    filename: str
    sha256: str
    size: int | None = None
    raw_sha256: str | None = None
    raw_size: int | None = None


def read_bounded(path: str | Path, max_bytes: int | None, why: str = "the limit for this file",
                 what: str = "data set file") -> bytes:
    """The bytes of regular file ``path``, refusing a file longer than ``max_bytes``.

    Never reads more than ``max_bytes + 1`` bytes, so a huge (or endless) file
    costs no more memory than a legitimate one.

    Raises
    ------
    DatasetError
        ``path`` is missing, unreadable or not a regular file (a FIFO is refused
        without blocking).
    FormatError
        The file is longer than ``max_bytes`` (``why`` says where that bound comes from).
    """
    with open_regular(path, error=DatasetError, what=what) as f:
        if max_bytes is None:
            return f.read()
        data = read_upto(f, max_bytes)
        if len(data) > max_bytes:
            size = f.seek(0, os.SEEK_END)
            raise FormatError(f"{path}: {size} bytes, more than {max_bytes} ({why}); "
                              f"refusing to read it")
    return data


def read_upto(f: BinaryIO, limit: int) -> bytes:
    """Read ``f`` to its end, but never more than ``limit + 1`` bytes.

    ``f.read(limit + 1)`` would allocate ``limit + 1`` bytes up front, however
    short the file; this reads what the file's size says (plus one byte, to
    notice a longer file), then in chunks, so memory follows the bytes present.
    """
    try:
        size = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, AttributeError, ValueError):
        size = 0
    parts = [f.read(min(limit + 1, max(size, 0) + 1))]
    total = len(parts[0])
    while total <= limit and parts[-1]:
        parts.append(f.read(min(CHUNK, limit + 1 - total)))
        total += len(parts[-1])
    return parts[0] if len(parts) == 1 else b"".join(parts)


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a regular file, read in chunks.

    Raises :class:`DatasetError` when ``path`` is missing or not a regular file.
    """
    h = hashlib.sha256()
    with open_regular(path, error=DatasetError) as f:
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
    # One line: the CLI prints the first line of an error only.
    raise DownloadError(f"{final}: could not download {remote.filename} from any mirror: "
                        + "; ".join(failures))


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a failed request: DNS, refused, timeout, TLS, ... never empty.

    ``urllib`` wraps the socket error in a ``URLError`` whose ``reason`` may be
    an exception or a string; the kind of failure is named first, the system's
    own words follow in parentheses.
    """
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, BaseException):
        text = str(reason) or type(reason).__name__
    else:
        text = str(reason) or type(exc).__name__
    text = " ".join(text.split())  # one line, whatever the system said
    kinds = ((socket.gaierror, "DNS lookup failed"),
             (ConnectionRefusedError, "connection refused"),
             (ConnectionResetError, "connection reset"),
             ((TimeoutError, socket.timeout), f"timed out (no data for {TIMEOUT:g} s)"),
             (ssl.SSLError, "TLS error"),
             (ConnectionError, "connection failed"))
    for kind, name in kinds:
        if isinstance(reason, kind) or isinstance(exc, kind):
            return f"{name} ({text})"
    return text


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
        raise _Failure(f"HTTP {exc.code} {exc.reason}".strip()) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Failure(describe_failure(exc)) from None
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
                raise _Cut(f"transfer cut after {offset + received} bytes "
                           f"({describe_failure(exc)})") from None
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


__all__ = ["RemoteFile", "cache_dir", "read_bounded", "sha256_file", "verify_file", "download",
           "ensure_files", "describe_failure", "ChecksumError", "DownloadError"]
