"""What one request may ask of the server, and reading a body within it.

Every limit is checked before the work it bounds: the body's size while it
streams in (a ``Content-Length`` over the cap is refused before a byte is
read, and a chunked body the moment it passes the cap), an image's pixels on
its header (:func:`imgcls.datasets._decode.decode_bytes`), and the numbers of
a JSON body on its raw bytes, before it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ServeLimits", "ApiError", "read_body"]

MIB = 1 << 20


@dataclass(frozen=True)
class ServeLimits:
    """Per-request limits of ``imgcls serve`` (each has a CLI flag).

    Parameters
    ----------
    max_body_bytes : int, default 16 MiB
        Largest request body (``--max-body-mib``).  Holds a few hundred
        photos' worth of JPEG or 64 PNG images of 256 x 256; the server keeps
        at most this much of one request in memory.
    max_pixels : int, default 2**24 (16.8 Mpx)
        Largest ``width * height`` of one uploaded image, read from its header
        before anything is decoded (``--max-pixels``).  A 16 Mpx photo decodes
        to ~50 MB of RGB.
    max_images : int, default 64
        Most images (files or JSON instances) in one request (``--max-images``).
    max_json_numbers : int, default 2**21
        Most numbers in one JSON body (``--max-json-numbers``), counted on the
        raw bytes before parsing: Python holds ~8-32 bytes per parsed number,
        so this bounds a JSON body's memory to a few dozen MiB.  2**21 holds
        64 images of 128 x 128 x 3.
    max_top_k : int, default 100
        Largest ``top_k`` (larger values are clipped to the model's classes
        anyway; this bounds the response).
    max_neighbors : int, default 32
        Most neighbours (and thumbnails) returned per image by a kNN model;
        a model with a larger ``k`` still votes with all of them.
    """

    max_body_bytes: int = 16 * MIB
    max_pixels: int = 1 << 24
    max_images: int = 64
    max_json_numbers: int = 1 << 21
    max_top_k: int = 100
    max_neighbors: int = 32

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be a positive int, got {value!r}")


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a short ``code`` and a one-line message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = " ".join(str(message).split())


async def read_body(request, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it exceeds ``limit`` bytes.

    A stated ``Content-Length`` over the limit is refused before reading; a
    body without one (chunked) is counted as it arrives, so no more than
    ``limit`` bytes plus one chunk are ever held.
    """
    stated = request.headers.get("content-length")
    if stated is not None:
        if not (stated.isascii() and stated.isdigit()):
            raise ApiError(400, "bad_request", f"Content-Length {stated[:40]!r} is not a number")
        # more digits than any limit has is over it (and int() of thousands of digits is slow)
        digits = stated.lstrip("0") or "0"
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise ApiError(413, "too_large", f"request body of {digits[:40]} bytes is over the "
                                             f"limit of {limit} bytes")
    from starlette.requests import ClientDisconnect

    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large",
                               f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # nobody will read the answer; a 4xx keeps it out of the server-error log
        raise ApiError(400, "bad_request", "the client disconnected before the body "
                                           "ended") from None
    return b"".join(chunks)
