"""Where the fuzz generators get their choices from, and byte-level mutation.

Every generator in :mod:`fuzz_formats` takes a *source* of choices instead of
calling ``random`` or hypothesis directly, so one generator serves two drivers:

- :class:`RandomSource` (``random.Random`` seeded per input): cheap, used by the
  long run ``python -m bench.fuzz``; input ``i`` of a reader is rebuilt exactly
  from ``(seed, reader, i)``, so a finding is reproduced by its index;
- :class:`HypothesisSource` (``st.data()``): used by the CI tests, so that
  hypothesis can shrink a failing input to a small one.

Bulk payloads (pixels, array data) come from :meth:`payload`, a PRNG seeded by
one drawn integer: hypothesis's buffer stays small and shrinking still works on
the structure (lengths, dims, opcodes), which is what the readers care about.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RandomSource", "HypothesisSource", "Blob", "Field", "mutate"]


class RandomSource:
    """Choices from ``random.Random(seed)``."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def bool(self, p: float = 0.5) -> bool:
        return self.r.random() < p

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def bytes(self, n: int) -> bytes:
        return self.r.randbytes(n)

    def payload(self, n: int) -> bytes:
        return self.r.randbytes(n)


class HypothesisSource:
    """Choices drawn from a hypothesis ``st.data()`` object (shrinkable)."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def bool(self, p: float = 0.5) -> bool:
        # integers, not booleans(): the probability p is honoured, and shrinking
        # goes to False for a small p (0 < 1000 * p is False only at 0).
        return self.data.draw(self.st.integers(0, 999)) >= 1000 - int(1000 * p)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bytes(self, n: int) -> bytes:
        return self.data.draw(self.st.binary(min_size=n, max_size=n))

    def payload(self, n: int) -> bytes:
        return random.Random(self.int(0, 2**32 - 1)).randbytes(n)


@dataclass
class Field:
    """A numeric field of a file: where it is, its width in bytes and byte order."""

    offset: int
    width: int
    order: str = "big"  # "big" or "little"


@dataclass
class Blob:
    """A generated file and the positions of its length/size fields."""

    data: bytes
    fields: list[Field] = field(default_factory=list)
    note: str = ""
    #: for an image that decodes: its width x height (legitimate decoding memory)
    pixels: int = 0


def _extremes(width: int, data_len: int) -> list[int]:
    top = (1 << (8 * width)) - 1
    vals = [0, 1, 2, 7, 255, top, top - 1, top >> 1, (top >> 1) + 1, data_len, data_len + 1,
            max(data_len - 1, 0), 1 << 31, (1 << 31) - 1, 1 << 32, 1 << 16, 1 << 62, 1 << 63]
    return [v & top for v in vals]


def _set_field(data: bytearray, f: Field, value: int) -> None:
    if f.offset + f.width > len(data):
        return
    data[f.offset:f.offset + f.width] = value.to_bytes(f.width, f.order)


def mutate(src, blob: Blob, splice: bytes | None = None, rounds: int | None = None) -> bytes:
    """Byte-level mutations of ``blob.data``: 1-3 of bit flips, interesting bytes,
    truncation, insertion, deletion, duplication, splicing with ``splice`` (another
    valid file of the same format) and overwriting a length field with an extreme value.
    """
    data = bytearray(blob.data)
    for _ in range(rounds if rounds is not None else src.int(1, 3)):
        kinds = ["flip", "byte", "truncate", "insert", "delete", "dup", "append"]
        if blob.fields:
            kinds += ["field", "field", "field"]
        if splice:
            kinds.append("splice")
        kind = src.choice(kinds)
        n = len(data)
        if kind == "flip" and n:
            for _ in range(src.int(1, 8)):
                i = src.int(0, n - 1)
                data[i] ^= 1 << src.int(0, 7)
        elif kind == "byte" and n:
            for _ in range(src.int(1, 4)):
                data[src.int(0, n - 1)] = src.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE])
        elif kind == "truncate":
            cuts = [f.offset for f in blob.fields] + [f.offset + f.width for f in blob.fields]
            at = src.choice(cuts) if cuts and src.bool() else src.int(0, n)
            del data[min(at, n):]
        elif kind == "insert":
            at = src.int(0, n)
            data[at:at] = src.bytes(src.int(1, 16)) if src.bool() else b"\x00" * src.int(1, 64)
        elif kind == "delete" and n:
            at = src.int(0, n - 1)
            del data[at:at + src.int(1, 64)]
        elif kind == "dup" and n:
            at = src.int(0, n - 1)
            chunk = bytes(data[at:at + src.int(1, 256)])
            data[at:at] = chunk * src.int(1, 4)
        elif kind == "append":
            data += src.bytes(src.int(1, 32))
        elif kind == "splice" and splice:
            a, b = src.int(0, n), src.int(0, len(splice))
            data = data[:a] + bytearray(splice[b:])
        elif kind == "field":
            f = src.choice(blob.fields)
            _set_field(data, f, src.choice(_extremes(f.width, len(data)))
                       if src.bool(0.8) else src.int(0, (1 << (8 * f.width)) - 1))
    return bytes(data)
