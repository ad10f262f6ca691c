"""The optional HMAC-SHA256 signature of a model file.

What it protects against: **deliberate edits**.  The two SHA-256s of a model
file catch accidents, but anyone can recompute them.  ``save(..., key=K)``
stores ``HMAC-SHA256(K, "imgcls-model-signature-v1\\n" + metadata_sha256 + "\\n" +
payload_sha256)`` (the hashes as hex text, both checked by the reader; ``K`` is
the key's bytes, a str encoded as UTF-8, at least :data:`MIN_KEY_BYTES`).
``load(..., key=K)`` refuses an unsigned file or one whose signature does
not match, before reading any tensor, so only holders of ``K`` can make a
file that passes.  A signature tells who made a file, not which file is the
latest: an older file signed with the same key still passes.  ``load``
without a key loads signed and unsigned files alike and checks integrity
only.

The signature is stored in the safetensors "__metadata__" under
:data:`SIGNATURE_KEY` as ``"hmac-sha256:<64 hex digits>"``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Any, Mapping

from .tensorfile import fail

__all__ = ["MIN_KEY_BYTES", "SIGNATURE_KEY", "SIGNATURE_PREFIX", "signing_key", "sign",
           "verify_signature"]

SIGNATURE_KEY = "imgcls_signature"
SIGNATURE_PREFIX = "hmac-sha256:"
# Domain separation: a MAC made for another purpose with the same key cannot
# pass as a model signature.  "v1" names this message layout.
_SIGNATURE_CONTEXT = b"imgcls-model-signature-v1\n"
#: Shortest key accepted for signing: 16 bytes = 128 bits.  HMAC-SHA256 is no
#: stronger than its key; below 128 bits, guessing the key offline from one
#: signed file starts to be within reach (NIST SP 800-107 asks for keys of at
#: least the security strength wanted).  A passphrase has far fewer bits than
#: its length suggests: prefer random bytes, e.g. ``secrets.token_bytes(32)``.
MIN_KEY_BYTES = 16


def signing_key(key: bytes | str | None) -> bytes | None:
    """The HMAC key: ``key`` itself, a str encoded as UTF-8; None without a key.

    RFC 2104: HMAC hashes a key longer than SHA-256's 64-byte block first, so
    any length from :data:`MIN_KEY_BYTES` up works.
    """
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
    else:
        raise ValueError(f"key: expected bytes or str, got {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key: must be at least {MIN_KEY_BYTES} bytes (128 bits), got "
                         f"{len(key)}; use random bytes, e.g. secrets.token_bytes(32)")
    return key


def sign(mac_key: bytes, metadata_sha256: str, payload_sha256: str) -> str:
    """The signature's 64 hex digits (without :data:`SIGNATURE_PREFIX`) for these two hashes."""
    message = (_SIGNATURE_CONTEXT + metadata_sha256.encode("ascii") + b"\n"
               + payload_sha256.encode("ascii"))
    return hmac.new(mac_key, message, hashlib.sha256).hexdigest()


def verify_signature(path: Path, header: Mapping[str, Any], doc: Mapping[str, Any],
                     mac_key: bytes) -> None:
    """Refuse, naming ``path``, an unsigned file or one whose signature ``mac_key`` did not make.

    ``header`` is the parsed safetensors header, ``doc`` its checked imgcls
    document (whose ``metadata_sha256`` the reader has already verified).
    """
    stored = header["__metadata__"].get(SIGNATURE_KEY)
    if stored is None:
        raise fail(path, "is not signed; refusing it because a key was given (save it "
                         "with imgcls.save(..., key=...) to sign it)")
    digest = stored[len(SIGNATURE_PREFIX):] if stored.startswith(SIGNATURE_PREFIX) else ""
    payload = doc.get("payload_sha256")
    if not (re.fullmatch("[0-9a-f]{64}", digest) and isinstance(payload, str)
            and re.fullmatch("[0-9a-f]{64}", payload)):
        raise fail(path, "malformed signature (expected hmac-sha256 and 64 hex digits)")
    expected = sign(mac_key, doc["metadata_sha256"], payload)
    if not hmac.compare_digest(expected, digest):
        raise fail(path, "the signature does not match this key: the file was modified "
                         "after it was signed, or signed with another key")
