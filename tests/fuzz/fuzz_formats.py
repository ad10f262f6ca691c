"""Builders of files in the formats imgcls reads, valid and crafted.

Each builder takes a source of choices (:mod:`fuzz_source`) and returns a
:class:`~fuzz_source.Blob`: the bytes plus the offsets of their length and size
fields, which the byte-level mutator overwrites with extreme values.  The
builders are written from the format specifications, not from imgcls's readers,
so that they can make the inputs a reader did not expect:

- IDX (LeCun's MNIST page): ``00 00 <type> <ndim>``, big-endian uint32 dims;
- gzip (RFC 1952): header flags FEXTRA/FNAME/FCOMMENT/FHCRC, CRC32 and ISIZE;
- CIFAR binary records; pickles assembled opcode by opcode (``pickletools``);
- ``.npy`` (numpy's NEP 1 format, versions 1-3) and ``.npz`` (zip);
- PNG chunks with recomputed CRCs, BMP and GIF headers, and Pillow-encoded images;
- tar headers (ustar / GNU / pax) with recomputed checksums;
- safetensors: 8-byte little-endian header length, JSON header, raw data.
"""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import tarfile
import zipfile
import zlib

import numpy as np

from fuzz_source import Blob, Field, mutate

# ----------------------------------------------------------------------------- IDX

#: IDX type code -> item size in bytes (from the IDX format description).
IDX_TYPES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def idx_file(type_code: int, dims, payload: bytes, ndim_byte: int | None = None) -> Blob:
    nd = len(dims) if ndim_byte is None else ndim_byte
    header = bytes([0, 0, type_code & 0xFF, nd & 0xFF]) + struct.pack(f">{len(dims)}I", *dims)
    fields = [Field(2, 1), Field(3, 1)] + [Field(4 + 4 * i, 4) for i in range(len(dims))]
    return Blob(header + payload, fields)


def small_dims(src, nd: int, max_items: int) -> list[int]:
    dims = []
    left = max_items
    for _ in range(nd):
        d = src.choice([0, 1, 2, 3, 5, 28]) if src.bool(0.7) else src.int(0, 12)
        d = min(d, left)
        dims.append(d)
        left = max(1, left // max(d, 1))
    return dims


def idx_valid(src, ndim: int | None = None, type_code: int | None = None,
              max_items: int = 2500) -> Blob:
    code = type_code if type_code is not None else src.choice(list(IDX_TYPES))
    nd = ndim if ndim is not None else src.int(0, 4)
    dims = small_dims(src, nd, max_items)
    n = int(np.prod(dims, dtype=object)) if dims else 1
    return idx_file(code, dims, src.payload(n * IDX_TYPES[code]))


def idx_crafted(src, ndim: int | None = None) -> Blob:
    """Valid-looking headers with crafted dims: int64-wrapping products, huge dims
    with short payloads, ndim 0 or above numpy's 64, bad type codes, HTML pages."""
    kind = src.choice(["wrap", "huge", "ndim", "zero", "type", "html", "short", "neg"])
    code = src.choice(list(IDX_TYPES))
    item = IDX_TYPES[code]
    if kind == "wrap":
        # powers of two whose exponents sum to >= 64: the exact product is a
        # multiple of 2**64, so an int64 product wraps to 0 and "expects" 0 bytes
        nd = ndim if ndim and ndim >= 3 else src.int(3, 5)
        exps = [src.int(16, 31) for _ in range(nd)]
        while sum(exps) < 64:
            exps[src.int(0, nd - 1)] = 31
        dims = [1 << e for e in exps]
        return idx_file(code, dims, b"" if src.bool(0.7) else src.payload(src.int(1, 64)))
    if kind == "neg":
        # product 2**63: an int64 product is negative
        nd = ndim if ndim and ndim >= 3 else 3
        dims = [1 << 31, 1 << 31, 2] + [1] * (nd - 3)
        return idx_file(code, dims, src.payload(src.int(0, 16)))
    if kind == "huge":
        nd = ndim if ndim is not None else src.int(1, 4)
        dims = [src.choice([(1 << 32) - 1, 1 << 31, 1 << 24, 60000, 1 << 20]) for _ in range(nd)]
        return idx_file(code, dims, src.payload(src.int(0, 256)))
    if kind == "ndim":
        nd = src.choice([0, 32, 33, 64, 65, 200, 255])
        dims = [1] * nd
        return idx_file(code, dims, src.payload(item))
    if kind == "zero":
        nd = ndim if ndim is not None else src.int(1, 4)
        dims = [src.choice([0, (1 << 32) - 1, 1 << 31]) for _ in range(nd)]
        dims[src.int(0, nd - 1)] = 0
        return idx_file(code, dims, b"")
    if kind == "type":
        head = bytes([src.choice([0, 0, 1, 0xFF]), src.choice([0, 0, 8]),
                      src.choice([0x00, 0x07, 0x0A, 0x0F, 0xFF]), src.int(0, 4)])
        return Blob(head + src.payload(src.int(0, 64)), [Field(2, 1), Field(3, 1)])
    if kind == "html":
        return Blob(b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n")
    data = idx_valid(src, ndim).data
    return Blob(data[:src.int(0, min(len(data), 4 + 4 * (ndim or 1)))])


# ----------------------------------------------------------------------------- gzip

_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16


def deflate_raw(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def gzip_member(src, raw: bytes, deflated: bytes | None = None) -> Blob:
    """One gzip member (RFC 1952) with random optional header fields."""
    flags = 0
    head = bytearray(b"\x1f\x8b\x08\x00" + struct.pack("<I", src.int(0, 2**32 - 1)) + b"\x00\xff")
    fields = []
    extra = b""
    if src.bool(0.2):
        flags |= _FEXTRA
        body = src.bytes(src.int(0, 16))
        fields.append(Field(len(head), 2, "little"))
        extra += struct.pack("<H", len(body)) + body
    if src.bool(0.3):
        flags |= _FNAME
        extra += b"train-images-idx3-ubyte\x00"
    if src.bool(0.1):
        flags |= _FCOMMENT
        extra += b"x" * src.int(0, 40) + b"\x00"
    head[3] = flags
    if src.bool(0.1):
        head[3] |= _FHCRC
        extra += struct.pack("<H", zlib.crc32(bytes(head) + extra) & 0xFFFF)
    body = deflated if deflated is not None else deflate_raw(raw, src.choice([0, 1, 6, 9]))
    start = len(head) + len(extra) + len(body)
    trailer = struct.pack("<II", zlib.crc32(raw) & 0xFFFFFFFF, len(raw) & 0xFFFFFFFF)
    fields += [Field(start, 4, "little"), Field(start + 4, 4, "little")]
    return Blob(bytes(head) + extra + body + trailer, fields)


@functools.lru_cache(maxsize=4)
def _zeros_deflated(n: int) -> bytes:
    return deflate_raw(b"\0" * n, 9)


#: Decompressed size of the gzip bombs: 128 MiB from ~130 KB, twice the 64 MiB
#: memory bound plus ten times the file.
BOMB_BYTES = 128 << 20


def gzip_bomb(src, prefix: bytes = b"") -> Blob:
    """``prefix`` (e.g. a valid IDX header) followed by 128 MiB of zeros, gzipped.

    The deflate stream of the zeros is built once per process; the prefix is a
    separate gzip member (a multi-member file is still one gzip file).
    """
    zeros = gzip_member(src, b"", deflated=_zeros_deflated(BOMB_BYTES)).data
    # the trailer must describe the zeros, not the empty input that sized the header
    zeros = zeros[:-8] + struct.pack("<II", _crc_zeros(BOMB_BYTES), BOMB_BYTES & 0xFFFFFFFF)
    head = gzip_member(src, prefix).data if prefix else b""
    return Blob(head + zeros, note=f"gzip bomb: {len(prefix)} bytes + {BOMB_BYTES >> 20} MiB zeros")


@functools.lru_cache(maxsize=4)
def _crc_zeros(n: int) -> int:
    crc, chunk = 0, b"\0" * (1 << 20)
    for _ in range(n // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return crc & 0xFFFFFFFF


def gzip_crafted(src, raw: bytes) -> Blob:
    kind = src.choice(["multi", "trailing", "truncated", "badcrc", "stored", "empty", "notgz"])
    m = gzip_member(src, raw)
    if kind == "multi":
        return Blob(m.data + gzip_member(src, raw[: src.int(0, len(raw))]).data, m.fields)
    if kind == "trailing":
        return Blob(m.data + src.choice([b"\0" * src.int(1, 600), src.bytes(src.int(1, 20)),
                                         b"\x1f\x8b"]), m.fields)
    if kind == "truncated":
        return Blob(m.data[:src.int(0, len(m.data) - 1)], m.fields)
    if kind == "badcrc":
        d = bytearray(m.data)
        d[-8:-4] = src.bytes(4)
        return Blob(bytes(d), m.fields)
    if kind == "stored":
        return gzip_member(src, raw, deflated=deflate_raw(raw, 0))
    if kind == "empty":
        return Blob(b"\x1f\x8b" if src.bool() else b"")
    return Blob(b"<html><head><title>404 Not Found</title></head></html>")


# ----------------------------------------------------------------------------- CIFAR

CIFAR_PIXELS = 32 * 32 * 3  # one CIFAR image: 3 channel planes of 32 x 32 bytes


def cifar_binary(src, label_bytes: int, n_classes: int, n_max: int = 4) -> Blob:
    n = src.int(0, n_max) if src.bool(0.3) else src.int(1, n_max)
    out = bytearray()
    for _ in range(n):
        labels = bytes(src.int(0, n_classes - 1) if src.bool(0.95) else src.int(0, 255)
                       for _ in range(label_bytes))
        out += labels + src.payload(CIFAR_PIXELS)
    return Blob(bytes(out))


def class_names_text(src, n: int) -> bytes:
    names = [f"class_{i}" for i in range(n + src.choice([0, 0, 0, -1, 1]))]
    text = "\n".join(names) + ("\n" if src.bool() else "")
    if src.bool(0.1):
        return text.encode("utf-8") + b"\xff\xfe"
    if src.bool(0.1):
        text = "\n\n  \n".join(names)
    return text.encode("utf-8")


# ----------------------------------------------------------------------------- pickle

class Pickler:
    """A pickle assembled opcode by opcode (names as in :mod:`pickletools`)."""

    def __init__(self, src, proto: int = 2):
        self.src, self.out, self.memo = src, bytearray(), 0
        # which of the equivalent opcodes to use (BINPUT or LONG_BINPUT ...): a
        # PRNG seeded from one draw, so that a hypothesis example stays small
        self.style = random.Random(src.int(0, 2**32 - 1))
        self.out += b"\x80" + bytes([proto])
        self.proto = proto

    def _p(self, p: float) -> bool:
        return self.style.random() < p

    def op(self, b: bytes):
        self.out += b
        return self

    def put(self):
        """Memoize the top of the stack (BINPUT / LONG_BINPUT / MEMOIZE); returns the index."""
        i = self.memo
        self.memo += 1
        if self.proto >= 4 and self._p(0.3):
            self.out += b"\x94"
        elif i < 256 and self._p(0.8):
            self.out += b"q" + bytes([i])
        else:
            self.out += b"r" + struct.pack("<I", i)
        return i

    def get(self, i: int):
        if i < 256 and self._p(0.7):
            self.out += b"h" + bytes([i])
        else:
            self.out += b"j" + struct.pack("<I", i)
        return self

    def int(self, v: int):
        if 0 <= v < 256 and self._p(0.8):
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536 and self._p(0.8):
            self.out += b"M" + struct.pack("<H", v)
        elif -2**31 <= v < 2**31 and self._p(0.8):
            self.out += b"J" + struct.pack("<i", v)
        else:
            n = (v.bit_length() + 8) // 8
            self.out += b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)
        return self

    def text(self, s: str, py2: bool | None = None):
        """A str: Python 2 byte strings (SHORT_BINSTRING/BINSTRING) or unicode opcodes."""
        py2 = self._p(0.5) if py2 is None else py2
        if py2:
            b = s.encode("latin-1", "replace")
            self.out += (b"U" + bytes([len(b)]) if len(b) < 256 and self._p(0.8)
                         else b"T" + struct.pack("<i", len(b))) + b
        else:
            b = s.encode("utf-8")
            if self.proto >= 4 and len(b) < 256 and self._p(0.5):
                self.out += b"\x8c" + bytes([len(b)]) + b
            else:
                self.out += b"X" + struct.pack("<I", len(b)) + b
        return self

    def raw(self, data: bytes, py2: bool):
        """Array data: a Python 2 byte string, or protocol-3 bytes."""
        if py2 or self.proto < 3:
            return self.op(b"T" + struct.pack("<i", len(data)) + data)
        if len(data) < 256 and self._p(0.5):
            return self.op(b"C" + bytes([len(data)]) + data)
        return self.op(b"B" + struct.pack("<I", len(data)) + data)

    def glob(self, module: str, name: str):
        if self.proto >= 4 and self._p(0.5):
            self.text(module, py2=False).text(name, py2=False)
            return self.op(b"\x93")
        return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def ndarray(self, shape, dtype_code: str, data: bytes, py2: bool, fortran: bool = False):
        """numpy's protocol-2 array: _reconstruct(ndarray, (0,), b'b') then BUILD state."""
        mod = self.src.choice(["numpy.core.multiarray", "numpy._core.multiarray"])
        self.glob(mod, "_reconstruct")
        self.glob("numpy", "ndarray")
        self.int(0).op(b"\x85")
        self.text("b", py2=True) if py2 else self._latin1(b"b")
        self.op(b"\x87R")
        self.put()
        self.op(b"(")  # state: (1, shape, dtype, is_fortran, raw)
        self.int(1)
        self.op(b"(")
        for s in shape:
            self.int(s)
        self.op(b"t")
        self.glob("numpy", "dtype")
        self.text(dtype_code, py2=py2).int(0).int(1).op(b"\x87R")
        self.put()
        self.op(b"(").int(3).text("|" if dtype_code in ("u1", "i1", "b1") else "<", py2=py2)
        self.op(b"NNN").int(-1).int(-1).int(0).op(b"tb")
        self.op(b"\x88" if fortran else b"\x89")
        if py2:
            self.raw(data, py2=True)
        else:
            self._latin1(data)
        self.op(b"tb")
        return self

    def _latin1(self, data: bytes):
        """bytes at protocol 2 from Python 3: _codecs.encode(text, 'latin1')."""
        self.glob("_codecs", "encode")
        self.text(data.decode("latin-1"), py2=False).text("latin1", py2=False)
        return self.op(b"\x86R")

    def stop(self) -> bytes:
        self.out += b"."
        return bytes(self.out)


def _py_value(p: Pickler, v, py2: bool):
    if isinstance(v, bool):
        p.op(b"\x88" if v else b"\x89")
    elif isinstance(v, int):
        p.int(v)
    elif isinstance(v, str):
        p.text(v, py2=py2)
    elif isinstance(v, list):
        p.op(b"]")
        p.put() if p._p(0.5) else None
        if v:
            if p._p(0.8):
                p.op(b"(")
                for x in v:
                    _py_value(p, x, py2)
                p.op(b"e")
            else:
                for x in v:
                    _py_value(p, x, py2)
                    p.op(b"a")
    elif isinstance(v, np.ndarray):
        p.ndarray(v.shape, v.dtype.str[1:], v.tobytes(), py2)
    elif v is None:
        p.op(b"N")
    else:
        raise TypeError(type(v))


def cifar_batch_pickle(src, label_key: str, n_classes: int, n_max: int = 3) -> Blob:
    """A CIFAR python-release batch, as Python 2 (the release) or Python 3 would write it."""
    py2 = src.bool(0.6)
    p = Pickler(src, proto=src.choice([2, 2, 2, 3, 4]) if not py2 else 2)
    n = src.int(0, n_max)
    entries = {"batch_label": "training batch 1 of 5",
               label_key: [src.int(0, n_classes - 1) if src.bool(0.97) else src.int(-2, 300)
                           for _ in range(n)],
               "data": np.frombuffer(src.payload(n * CIFAR_PIXELS), np.uint8).reshape(n, CIFAR_PIXELS),
               "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels" and src.bool():
        entries["coarse_labels"] = [src.int(0, 19) for _ in range(n)]
    p.op(b"}")
    p.put()
    p.op(b"(")
    for k, v in entries.items():
        if src.bool(0.03):
            continue  # a missing key
        p.text(k, py2=py2)
        _py_value(p, v, py2)
    p.op(b"u")
    return Blob(p.stop())


def cifar_meta_pickle(src, key: str, n_classes: int) -> Blob:
    py2 = src.bool(0.6)
    p = Pickler(src, proto=2 if py2 else src.choice([2, 3, 4]))
    p.op(b"}")
    p.put()
    p.op(b"(")
    p.text(key, py2=py2)
    _py_value(p, [f"c{i}" for i in range(n_classes + src.choice([0, 0, 0, 1, -1]))], py2)
    if src.bool():
        p.text("num_cases_per_batch", py2=py2).int(10000)
    if src.bool(0.3):
        p.text("num_vis", py2=py2).int(3072)
    p.op(b"u")
    return Blob(p.stop())


#: globals a crafted pickle may name: the reader's allowed ones and dangerous ones
PICKLE_GLOBALS = [("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                  ("numpy", "dtype"), ("_codecs", "encode"), ("os", "system"),
                  ("builtins", "eval"), ("builtins", "getattr"), ("numpy", "frombuffer"),
                  ("numpy.core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                  ("builtins", "list"), ("collections", "OrderedDict")]


def pickle_memo_bomb(src) -> Blob:
    """Shared references: level i is a list (or tuple) holding level i-1 ``k`` times.

    Expanded into fresh copies, ``k ** depth`` nodes come from a few hundred bytes
    (each level costs ``k`` two-byte BINGETs).  Every level is a value of the
    top dict, so the stack is clean at STOP.
    """
    p = Pickler(src, proto=src.choice([2, 4]))
    # shallow and wide is the dangerous shape: a reader that refuses deep nesting
    # still copies k ** depth * m leaves (400 ** 2 * 400 = 64 M from ~2.4 KB)
    k, depth, m = src.int(2, 400), src.int(1, 5), src.choice([1, 4, 100, 400])
    keys = ["labels", "data", "filenames", "fine_labels", "coarse_labels", "batch_label",
            "label_names"]
    tuples = src.bool(0.3)
    p.op(b"}")
    p.put()
    p.op(b"(")
    p.text(keys[0])
    p.op(b"]")
    prev = p.put()
    p.op(b"(")
    for _ in range(m):
        p.int(p.style.randrange(10))
    p.op(b"e")
    for level in range(depth):
        p.text(keys[(level + 1) % len(keys)] if src.bool(0.7) else f"k{level}")
        if tuples:
            p.op(b"(")
            for _ in range(k):
                p.get(prev)
            p.op(b"t")
            prev = p.put()
        else:
            p.op(b"]")
            cur = p.put()
            p.op(b"(")
            for _ in range(k):
                p.get(prev)
            p.op(b"e")
            prev = cur
    p.op(b"u")
    return Blob(p.stop(), note=f"memo bomb k={k} depth={depth} leaves={m} tuples={tuples}")


def pickle_random_program(src) -> Blob:
    """A random opcode sequence from the reader's whitelist and beyond it."""
    p = Pickler(src, proto=src.choice([0, 1, 2, 3, 4, 5]))
    for _ in range(src.int(1, 40)):
        k = src.int(0, 29)
        if k == 0:
            p.op(b"(")
        elif k == 1:
            p.op(b"}")
        elif k == 2:
            p.op(b"]")
        elif k == 3:
            p.int(src.choice([0, 1, -1, 255, 256, 2**31 - 1, -2**31, 2**64, -2**100]))
        elif k == 4:
            p.text(src.choice(["data", "labels", "a" * src.int(0, 300), "\u00e9", ""]))
        elif k == 5:
            p.put()
        elif k == 6:
            p.get(src.int(0, max(p.memo + 1, 1)))
        elif k == 7:
            p.op(src.choice([b"t", b"\x85", b"\x86", b"\x87", b")"]))
        elif k == 8:
            p.op(src.choice([b"a", b"e"]))
        elif k == 9:
            p.op(src.choice([b"s", b"u"]))
        elif k == 10:
            p.glob(*src.choice(PICKLE_GLOBALS))
        elif k == 11:
            p.op(b"R")
        elif k == 12:
            p.op(b"b")
        elif k == 13:
            p.op(src.choice([b"N", b"\x88", b"\x89"]))
        elif k == 14:
            p.op(b"G" + struct.pack(">d", src.choice([0.0, float("nan"), float("inf"), 1e308])))
        elif k == 15:
            p.raw(src.bytes(src.int(0, 16)), py2=src.bool())
        elif k == 16:
            # a length that promises more than follows
            p.op(src.choice([b"X", b"B", b"T"]) + struct.pack("<I", src.choice([2**31 - 1, 2**32 - 1, 1 << 30, 100])))
        elif k == 17:
            p.op(b"\x95" + struct.pack("<Q", src.choice([0, 1, 2**63, 2**64 - 1, 50])))
        elif k == 18:
            p.op(src.choice([b"i", b"o", b"\x81", b"\x92", b"P", b"Q", b"\x82", b"\x8b", b"\x96",
                             b"\x97", b"\x98", b"V", b"S", b"F", b"L"]))
        elif k == 19:
            p.op(b"I" + src.choice([b"7", b"9" * 5000, b"-1", b"01", b"x"]) + b"\n")
        elif k == 20:
            p.op(b"p" + str(src.int(0, 5)).encode() + b"\n")
        elif k == 21:
            p.op(b"g" + str(src.int(0, 5)).encode() + b"\n")
        elif k == 22:
            shape = tuple(src.choice([0, 1, 3, 3072, 1 << 31, (1 << 32) + 1]) for _ in range(src.int(0, 3)))
            p.ndarray(shape, src.choice(["u1", "f8", "O", "V8", "<U5", "i8", "b1"]),
                      src.bytes(src.int(0, 24)), py2=src.bool(), fortran=src.bool(0.2))
        elif k == 23:
            p.op(b"\x8a" + bytes([src.choice([0, 1, 8, 255])]) + src.bytes(src.int(0, 8)))
        else:
            pass
    data = p.stop()
    if src.bool(0.2):
        data = data[:-1]
    return Blob(data, note="random opcode program")


# ----------------------------------------------------------------------------- npy / npz

NPY_MAGIC = b"\x93NUMPY"


def npy_header(header_text: str, version: int = 1, align: bool = True) -> tuple[bytes, Field]:
    text = header_text
    if align:
        pre = len(NPY_MAGIC) + 2 + (2 if version == 1 else 4)
        pad = (-(pre + len(text) + 1)) % 64
        text = text + " " * pad + "\n"
    body = text.encode("latin-1" if version < 3 else "utf-8", "replace")
    if version == 1:
        head = NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(body) & 0xFFFF)
        return head + body, Field(8, 2, "little")
    head = NPY_MAGIC + bytes([version, 0]) + struct.pack("<I", len(body))
    return head + body, Field(8, 4, "little")


def npy_bytes(arr: np.ndarray) -> Blob:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    data = buf.getvalue()
    ver = data[6]
    return Blob(data, [Field(8, 2 if ver == 1 else 4, "little")])


def npy_crafted(src) -> Blob:
    """A .npy header with a crafted shape, dtype or layout, and a short payload."""
    shape = src.choice([
        "(1099511627776,)", "(2147483648, 2147483648)", "(4294967297, 3)", "(-1,)",
        "(9223372036854775807,)", "(18446744073709551616,)", "()", "(0, 4294967295)",
        "(" + "1, " * src.choice([33, 64, 65, 100]) + ")", "(3, 2)", "(5,)", "[3, 2]",
        "(3.5,)", "('a',)", "(100000000, 28, 28)", "(" + "9" * 5000 + ",)"])  # 5000 digits: over int()'s default limit
    descr = src.choice(["'<f8'", "'|u1'", "'<U1000000000'", "'|V8'", "[('a', '<i4')]", "'|O'",
                        "'O'", "'<M8[D]'", "'>c16'", "'<f2'", "'|S0'", "'<i8'", "'|b1'",
                        "'<U3'", "'nonsense'", "3", "[('a', '<f8', (1000000000,))]"])
    fortran = src.choice(["False", "True", "0", "'x'"])
    parts = [f"'descr': {descr}", f"'fortran_order': {fortran}", f"'shape': {shape}"]
    if src.bool(0.1):
        parts.pop(src.int(0, 2))
    if src.bool(0.05):
        parts.append("'extra': 1")
    text = "{" + ", ".join(parts) + ", }"
    if src.bool(0.05):
        text = src.choice(["__import__('os').system('true')", "{'descr': " * 200, "[]", ""])
    head, fld = npy_header(text, version=src.choice([1, 1, 2, 3]), align=src.bool(0.9))
    payload = src.payload(src.choice([0, 1, 8, 24, 48, 4096]))
    return Blob(head + payload, [fld], note=f"npy shape={shape[:40]} descr={descr[:30]}")


def zip_fields(data: bytes) -> list[Field]:
    """Size/offset fields of a zip's local headers, central directory and end record."""
    fields = []
    for sig, offs in ((b"PK\x03\x04", [(18, 4), (22, 4), (26, 2), (28, 2)]),
                      (b"PK\x01\x02", [(20, 4), (24, 4), (28, 2), (30, 2), (42, 4)]),
                      (b"PK\x05\x06", [(8, 2), (10, 2), (12, 4), (16, 4)])):
        i = data.find(sig)
        while i >= 0:
            fields += [Field(i + o, w, "little") for o, w in offs]
            i = data.find(sig, i + 4)
    return fields


def zip_bytes(members: dict[str, bytes], compress: bool) -> Blob:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    data = buf.getvalue()
    return Blob(data, zip_fields(data))


def dataset_arrays(src) -> dict[str, np.ndarray]:
    """Arrays for ``npz:``: a split or X/y, images or features, int or string labels."""
    kind = src.choice(["img", "img3", "feat", "feat"])
    if kind.startswith("img"):
        h, w = src.int(1, 6), src.int(1, 6)
        tail = (h, w) if kind == "img3" else (h, w, src.choice([1, 3]))
        dtype = "|u1"
    else:
        tail = (src.int(1, 6),)
        dtype = src.choice(["<f4", "<f8", "<f2", "<i4", "|b1", "|u1", ">f8", "<i8"])

    def X(n):
        size = n * int(np.prod(tail))
        raw = np.frombuffer(src.payload(size), np.uint8)
        if dtype == "|u1":
            return raw.reshape(n, *tail).copy()
        arr = (raw.astype(np.float64) / 7).reshape(n, *tail).astype(dtype)
        if src.bool(0.05) and arr.dtype.kind == "f" and arr.size:
            arr.flat[0] = np.nan
        return arr

    k = src.int(1, 3)
    strings = src.bool(0.3)
    label_dtype = src.choice(["<U3", "|S3"]) if strings else src.choice(["<i8", "|u1", "<i4"])

    def y(n):
        vals = [src.int(0, k - 1) for _ in range(n)]
        if strings:
            return np.array([f"c{v}" for v in vals], dtype=label_dtype)
        if src.bool(0.03):
            return np.array(vals, dtype=np.float64)
        return np.array(vals, dtype=label_dtype)

    out = {}
    if src.bool():
        n_tr, n_te = src.int(1, 8), src.int(1, 4)
        out["X_train"], out["y_train"] = X(n_tr), y(n_tr)
        out["X_test"], out["y_test"] = X(n_te), y(n_te)
    else:
        n = src.int(2, 12)
        out["X"], out["y"] = X(n), y(n)
    if src.bool(0.3):
        out["classes"] = np.array([f"c{i}" for i in range(k + src.choice([0, 0, 1]))])
    if src.bool(0.05):
        out["y" if "y" in out else "y_train"] = np.zeros((2, 2), np.int64)
    return out


# ----------------------------------------------------------------------------- images

IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"}
_MODES_BY_FORMAT = {
    "PNG": ["L", "RGB", "RGBA", "LA", "P", "Ptrans", "I;16", "1"],
    "JPEG": ["L", "RGB", "CMYK"],
    "BMP": ["L", "RGB", "P", "1", "RGBA"],
    "GIF": ["L", "P", "Ptrans", "RGB"],
    "WEBP": ["RGB", "RGBA"],
}


def image_file(src, size: tuple[int, int] | None = None, fmt: str | None = None,
               mode: str | None = None) -> tuple[Blob, str]:
    """A Pillow-encoded image; returns (blob, extension)."""
    from PIL import Image

    fmt = fmt or src.choice(list(IMAGE_FORMATS))
    mode = mode or src.choice(_MODES_BY_FORMAT[fmt])
    w, h = size if size is not None else (src.int(1, 40), src.int(1, 40))
    if mode in ("P", "Ptrans"):
        im = Image.frombytes("P", (w, h), src.payload(w * h))
        im.putpalette(list(src.payload(768)))
        if mode == "Ptrans":
            im.info["transparency"] = src.int(0, 255)
    elif mode == "I;16":
        im = Image.frombytes("I;16", (w, h), src.payload(2 * w * h))
    elif mode == "I":
        im = Image.frombytes("I", (w, h), src.payload(4 * w * h))
    elif mode == "1":
        im = Image.frombytes("L", (w, h), src.payload(w * h)).convert("1")
    else:
        bands = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4}[mode]
        im = Image.frombytes(mode, (w, h), src.payload(bands * w * h))
    buf = io.BytesIO()
    kwargs = {"transparency": im.info["transparency"]} if "transparency" in im.info and fmt in ("PNG", "GIF") else {}
    im.save(buf, format=fmt, **kwargs)
    data = buf.getvalue()
    fields = []
    if fmt == "PNG":
        fields = [Field(16, 4), Field(20, 4), Field(8, 4)]
    elif fmt == "BMP":
        fields = [Field(2, 4, "little"), Field(10, 4, "little"), Field(14, 4, "little"),
                  Field(18, 4, "little"), Field(22, 4, "little"), Field(28, 2, "little"),
                  Field(30, 4, "little"), Field(46, 4, "little")]
    elif fmt == "GIF":
        fields = [Field(6, 2, "little"), Field(8, 2, "little")]
    elif fmt == "JPEG":
        i = data.find(b"\xff\xc0")
        if i < 0:
            i = data.find(b"\xff\xc2")
        if i >= 0:
            fields = [Field(i + 2, 2), Field(i + 5, 2), Field(i + 7, 2)]
    return Blob(data, fields, note=f"{fmt} {mode} {w}x{h}", pixels=w * h), IMAGE_FORMATS[fmt]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=8)
def _png_rows_deflated(row_bytes: int, rows: int) -> bytes:
    # filter byte 0 + zero pixels per row, deflated once per process
    c = zlib.compressobj(9)
    row = b"\0" * (row_bytes + 1)
    out = [c.compress(row) for _ in range(rows)]
    return b"".join(out) + c.flush()


@functools.lru_cache(maxsize=1)
def _text_bomb() -> bytes:
    return zlib.compress(b"A" * (32 << 20), 9)  # 32 MiB of text from ~32 KB


def png_crafted(src) -> Blob:
    """PNG with a valid signature and CRCs but crafted IHDR dims, bit depth, colour
    type, text chunks, or an IDAT that inflates far beyond the file."""
    kind = src.choice(["huge", "huge", "mid", "depth", "ztxt", "idat_bomb", "noidat"])
    w = h = 1
    depth, ctype = 8, src.choice([0, 2, 3, 4, 6])
    if kind == "huge":
        w, h = src.choice([(2**31 - 1, 2**31 - 1), (100000, 100000), (1 << 16, 1 << 15),
                           (20000, 20000), (1, 2**31 - 1), (0, 5), (5, 0)])
    elif kind == "mid":
        w, h = src.choice([(13000, 13000), (12000, 7000), (9500, 9500)])
    elif kind == "depth":
        depth, ctype = src.choice([(16, 0), (16, 2), (16, 6), (1, 0), (2, 3), (4, 0), (7, 0),
                                   (16, 3), (8, 5)])
        w, h = src.int(1, 20), src.int(1, 20)
    elif kind == "idat_bomb":
        # a valid image, 4 M zero pixels from a few KB (decoding it is legitimate)
        w, h, ctype = 2000, 2000, 0
    else:
        w, h = src.int(1, 16), src.int(1, 16)
    ihdr = struct.pack(">IIBBBBB", w & 0xFFFFFFFF, h & 0xFFFFFFFF, depth, ctype, 0, 0,
                       src.choice([0, 0, 1]))
    chunks = [png_chunk(b"IHDR", ihdr)]
    if ctype == 3:
        chunks.append(png_chunk(b"PLTE", src.payload(3 * src.choice([1, 16, 256]))))
    if kind == "ztxt":
        chunks.append(png_chunk(b"zTXt", b"Comment\0\0" + _text_bomb()))
    if kind == "idat_bomb":
        chunks.append(png_chunk(b"IDAT", _png_rows_deflated(w, h)))
    elif kind != "noidat":
        chunks.append(png_chunk(b"IDAT", zlib.compress(src.payload(src.int(0, 64)))))
    chunks.append(png_chunk(b"IEND", b""))
    data = b"\x89PNG\r\n\x1a\n" + b"".join(chunks)
    return Blob(data, [Field(16, 4), Field(20, 4)], note=f"PNG {kind} {w}x{h} depth {depth} type {ctype}",
                pixels=w * h if kind == "idat_bomb" else 0)


def bmp_crafted(src) -> Blob:
    w = src.choice([1, 3, 1 << 15, 2**31 - 1, -(2**31), 100000])
    h = src.choice([1, -3, 1 << 15, 2**31 - 1, -(2**31), 100000])
    bpp = src.choice([1, 4, 8, 16, 24, 32, 0, 64])
    comp = src.choice([0, 0, 1, 2, 3, 4, 5, 99])
    pixels = src.payload(src.int(0, 64))
    colors = src.choice([0, 2, 256, 2**31])
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, comp, len(pixels), 2835, 2835, colors, 0)
    off = 14 + len(info)
    head = b"BM" + struct.pack("<IHHI", off + len(pixels), 0, 0, off)
    return Blob(head + info + pixels, [Field(2, 4, "little"), Field(10, 4, "little"),
                                       Field(18, 4, "little"), Field(22, 4, "little")],
                note=f"BMP {w}x{h} bpp {bpp} comp {comp}")


def gif_crafted(src) -> Blob:
    w, h = src.choice([(65535, 65535), (1, 1), (0, 0), (4000, 4000)])
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0) + src.payload(256 * 3)
    img = b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x08" + b"\x02\x4c\x01\x00" + b";"
    return Blob(head + img, [Field(6, 2, "little"), Field(8, 2, "little")], note=f"GIF {w}x{h}")


#: formats that Pillow encodes in microseconds (JPEG and WebP take milliseconds)
CHEAP_FORMATS = ["PNG", "PNG", "BMP", "GIF", "BMP"]


@functools.lru_cache(maxsize=1)
def image_pool() -> tuple[tuple[Blob, str], ...]:
    """Valid images of every format and mode, encoded once per process (fixed seeds)."""
    from fuzz_source import RandomSource

    pool = []
    for fmt, modes in _MODES_BY_FORMAT.items():
        for mode in modes:
            for k in range(3):
                pool.append(image_file(RandomSource(f"pool:{fmt}:{mode}:{k}"), fmt=fmt, mode=mode))
    return tuple(pool)


def image_valid(src) -> tuple[Blob, str]:
    """A valid image: from the pool (any format), or freshly encoded (cheap formats)."""
    if src.bool(0.6):
        return src.choice(image_pool())
    return image_file(src, fmt=src.choice(CHEAP_FORMATS))


def image_any(src) -> tuple[Blob, str]:
    """A valid, crafted or mutated image file, and the extension to give it."""
    r = src.int(0, 99)
    if r < 35:
        return image_valid(src)
    if r < 55:
        return png_crafted(src), ".png"
    if r < 62:
        return bmp_crafted(src), ".bmp"
    if r < 67:
        return gif_crafted(src), ".gif"
    blob, ext = image_valid(src)
    other, _ = src.choice(image_pool())
    return Blob(mutate(src, blob, splice=other.data), note="mutated " + blob.note,
                pixels=blob.pixels), ext


# ----------------------------------------------------------------------------- tar

def tar_header(info: tarfile.TarInfo, fmt: int) -> bytes:
    return info.tobuf(fmt, "utf-8", "surrogateescape")


def tar_checksum_fix(block: bytearray, at: int = 0) -> None:
    """Recompute the ustar checksum of the 512-byte header at ``at``."""
    hdr = block[at:at + 512]
    hdr[148:156] = b"        "
    chk = sum(hdr)
    block[at + 148:at + 156] = b"%06o\0 " % chk


#: member names that are dangerous or odd for an extractor
TAR_NAMES = ["a.bin", "dir/b.bin", "../evil", "dir/../../evil", "/abs/evil", "C:evil",
             "C:\\evil", "dir\\..\\..\\evil", "./c.bin", "dir//d.bin", "dir/", "", ".",
             "\u00e9t\u00e9.bin", "x" * 150 + "/long.bin", "dir/sub/e.bin", "a.bin/inner",
             "dir/\x00nul", "-rf"]


def tar_archive(src, top: str = "data") -> tuple[Blob, list[dict]]:
    """A tar archive with random members, and the list of member specs.

    Each spec: ``{"name", "type", "data", "link"}`` as written.
    """
    fmt = src.choice([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
    out = bytearray()
    specs = []
    fields = []
    for _ in range(src.int(0, 6)):
        r = src.int(0, 99)
        name = (f"{top}/f{src.int(0, 9)}.bin" if r < 55 else src.choice(TAR_NAMES))
        info = tarfile.TarInfo(name)
        info.mtime = src.choice([0, 1700000000, 2**33, -1]) if src.bool(0.1) else 1700000000
        info.mode = src.choice([0o644, 0o755, 0o4755, 0o000, 0o7777])
        data = b""
        t = src.int(0, 99)
        if t < 65:
            info.type = tarfile.REGTYPE
            data = src.payload(src.choice([0, 1, 100, 512, 1000]))
            info.size = len(data)
        elif t < 75:
            info.type = tarfile.DIRTYPE
        elif t < 82:
            info.type = tarfile.SYMTYPE
            info.linkname = src.choice(["/etc/passwd", "../../x", f"{top}/f1.bin", "/dev/zero", "."])
        elif t < 88:
            info.type = tarfile.LNKTYPE
            info.linkname = src.choice(["/etc/passwd", f"{top}/f1.bin", "../x", name])
        elif t < 91:
            info.type = tarfile.FIFOTYPE
        elif t < 94:
            info.type = src.choice([tarfile.CHRTYPE, tarfile.BLKTYPE])
            info.devmajor, info.devminor = 1, 5
        elif t < 96:
            info.type = tarfile.CONTTYPE
            data = src.payload(10)
            info.size = 10
        else:
            # a size far beyond the data (pax carries any size; ustar's octal
            # field is patched below)
            info.type = tarfile.REGTYPE
            data = src.payload(src.int(0, 100))
            info.size = len(data)
        try:
            head = bytearray(tar_header(info, fmt))
        except (ValueError, UnicodeError):
            continue
        start = len(out)
        if t >= 96:
            # patch the size field of the last 512-byte header block
            last = len(head) - 512
            huge = src.choice([1 << 33, (1 << 40), 8 ** 11 - 1, 1 << 62])
            head[last + 124:last + 136] = (b"%011o\0" % huge if huge < 8 ** 11
                                           else b"\x80" + huge.to_bytes(11, "big"))
            tar_checksum_fix(head, last)
            fields.append(Field(start + last + 124, 12))
        out += head
        out += data + b"\0" * (-len(data) % 512)
        specs.append({"name": name, "type": info.type.decode() if isinstance(info.type, bytes) else str(info.type),
                      "data": data, "link": info.linkname})
    out += b"\0" * 1024 if src.bool(0.9) else b""
    return Blob(bytes(out), fields, note=f"tar format {fmt}"), specs


def compress_tar(src, data: bytes) -> tuple[bytes, str]:
    kind = src.choice(["", "", "", "gz", "gz", "gz", "bz2", "xz"])
    if kind == "gz":
        import gzip
        return gzip.compress(data, mtime=0), ".tar.gz"
    if kind == "bz2":
        import bz2
        return bz2.compress(data, 1), ".tar.bz2"
    if kind == "xz":
        import lzma
        return lzma.compress(data, preset=0), ".tar.xz"
    return data, ".tar"


def tar_header_mutate(src, data: bytes) -> bytes:
    """Overwrite one header field (size, type, mode, name) and fix the checksum."""
    d = bytearray(data)
    blocks = [i for i in range(0, len(d) - 511, 512) if d[i + 257:i + 262] == b"ustar"]
    if not blocks:
        return data
    at = src.choice(blocks)
    what = src.choice(["size", "type", "name", "link", "mode"])
    if what == "size":
        v = src.choice([0, 1, 511, 513, 8 ** 11 - 1, 1 << 33, 1 << 62])
        d[at + 124:at + 136] = b"%011o\0" % v if v < 8 ** 11 else b"\x80" + v.to_bytes(11, "big")
    elif what == "type":
        d[at + 156] = src.choice(b"0123456789LKxgS\0")
    elif what == "name":
        name = src.choice(["../up", "/abs", "a/../../b", "dir/", "x" * 100]).encode()
        d[at:at + 100] = name[:100].ljust(100, b"\0")
    elif what == "link":
        d[at + 157:at + 257] = src.choice([b"/etc/passwd", b"../x", b""]).ljust(100, b"\0")
    else:
        d[at + 100:at + 108] = b"%07o\0" % src.choice([0o7777, 0, 0o777])
    tar_checksum_fix(d, at)
    return bytes(d)


# ----------------------------------------------------------------------------- safetensors

def safetensors_split(data: bytes) -> tuple[dict, bytes]:
    """(header JSON, data section) of a safetensors file written by a conforming writer."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def safetensors_join(header: dict | str, body: bytes, pad: bool = True) -> Blob:
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8")
    if pad:
        raw += b" " * (-len(raw) % 8)
    data = struct.pack("<Q", len(raw)) + raw + body
    return Blob(data, [Field(0, 8, "little")])


def deep_json(depth: int, tagged: bool = False) -> str:
    """JSON nested ``depth`` levels deep, as text (lists, or ``$tuple`` objects)."""
    if tagged:
        return '{"$tuple":[' * depth + "1" + "]}" * depth
    return "[" * depth + "1" + "]" * depth
