"""A data-only reader for the pickle files of the CIFAR python release.

Python's own unpickler can run any code a file names, so it is never used on a file
imgcls did not write.  This reader walks the opcodes with
:func:`pickletools.genops` (which only decodes them) and interprets a small
whitelist itself: containers (dict, list, tuple), str/bytes, int, float, bool,
None, the memo, and exactly three callables, each replaced by a safe local
re-implementation that checks its arguments:

- ``numpy.core.multiarray._reconstruct(numpy.ndarray, shape, b"b")`` followed by
  ``BUILD (version, shape, dtype, is_fortran, raw_bytes)`` -> an array made here
  with ``np.frombuffer`` (only plain numeric dtypes),
- ``numpy.dtype(code, False, True)`` followed by its ``BUILD`` state,
- ``_codecs.encode(text, "latin1")`` (how Python 3 pickles bytes at protocol 2).

Any other opcode (``INST``, ``OBJ``, ``NEWOBJ``, ``EXT*``, persistent ids ...),
any other global, or a ``REDUCE``/``BUILD`` on anything else raises
:class:`~imgcls.errors.FormatError`.  Nothing named by the file is ever imported
or called.
"""

from __future__ import annotations

import io
import math
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError

_RECONSTRUCT = {"numpy.core.multiarray _reconstruct", "numpy._core.multiarray _reconstruct"}
_NDARRAY = "numpy ndarray"
_DTYPE = "numpy dtype"
_ENCODE = "_codecs encode"
_ALLOWED_GLOBALS = _RECONSTRUCT | {_NDARRAY, _DTYPE, _ENCODE}
# Numeric dtypes an array may have (no object, no void/structured, no datetime).
_DTYPE_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"}
_CONSTANTS = {"EMPTY_TUPLE": (), "NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_SCALARS = {"BININT", "BININT1", "BININT2", "LONG1", "INT", "BINFLOAT"}
_STRINGS = {"SHORT_BINSTRING", "BINSTRING", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
            "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}

# Limits derived from the largest file of the CIFAR python release, CIFAR-100's
# ``train``: 50000 images of 32 * 32 * 3 = 3072 bytes (153,600,000 bytes), two
# label lists of 50000 ints and 50000 file names of about 30 characters, about
# 155 MB in all.  The same data re-pickled by Python 3 at protocol 2 store the
# pixels as UTF-8 text (up to 2 bytes per pixel byte) and then ``encode`` them.
#: Most bytes a file may have: 256 MiB, above the official 155 MB and a
#: Python 3 protocol-2 re-pickle (~1.5 x the pixels for photographs).
MAX_FILE_BYTES = 1 << 28
#: Most bytes of strings decoded from a file (text, bytes and ``encode`` results;
#: an array's data is a copy of one of them and not counted again): the official
#: file needs 155 MB, a protocol-2 re-pickle 2 x 153.6 MB; ~4 % margin over that.
MAX_BYTES = 320_000_000
#: Most values a file may push (each a new object or a reference to one; at most
#: ~70 bytes of memory each).  That ``train`` file pushes about 150,000 (3 x 50000
#: list entries); 500,000 leaves a margin of three.
MAX_NODES = 500_000
#: Deepest container nesting in the result.  A CIFAR file is a dict of lists
#: (depth 2); deeper nesting is refused.
MAX_DEPTH = 4


class _Global:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _DType:
    __slots__ = ("code", "endian")

    def __init__(self, code: str):
        self.code, self.endian = code, "|"

    def numpy(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.endian) if self.endian in "<>" else dtype


class _Array:
    __slots__ = ("array",)

    def __init__(self):
        self.array: np.ndarray | None = None


class _Mark:
    """The stack marker pushed by MARK."""

    __slots__ = ()


_MARK = _Mark()


def _fail(where: str, pos: int, why: str) -> FormatError:
    return FormatError(f"{where}: not a plain-data CIFAR pickle: {why} (at byte {pos}); "
                       f"refusing to read it")


def _kind(value: Any) -> str:
    """A short, bounded description of a value for messages (never its repr: it may be
    nested a million deep or hold megabytes)."""
    if isinstance(value, str) and len(value) <= 40:
        return repr(value)
    return f"a {type(value).__name__.strip('_')}"


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a Python 2 ``str`` is decoded as latin-1 by genops
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return None
    return None


def _int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(type(v) is int and v >= 0 for v in value)


_ALLOWED_OPS = (_SCALARS | _STRINGS | set(_CONSTANTS) | {
    "PROTO", "FRAME", "STOP", "MARK", "EMPTY_DICT", "EMPTY_LIST", "BINPUT", "LONG_BINPUT",
    "PUT", "MEMOIZE", "BINGET", "LONG_BINGET", "GET", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "APPEND", "APPENDS", "SETITEM", "SETITEMS", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD"})


def _ops(data: bytes, where: str):
    """Yield ``(opcode name, argument, position)`` like :func:`pickletools.genops`,
    but refuse an opcode outside :data:`_ALLOWED_OPS` before its argument is decoded
    (so e.g. the text ``STRING`` argument is never unescaped)."""
    f = io.BytesIO(data)
    code2op = pickletools.code2op
    while True:
        pos = f.tell()
        code = f.read(1)
        if not code:
            return
        op = code2op.get(code.decode("latin-1"))
        if op is None:
            raise _fail(where, pos, f"unknown opcode byte 0x{code.hex()}")
        if op.name not in _ALLOWED_OPS:
            raise _fail(where, pos, f"opcode {op.name} is not allowed")
        if op.name == "GLOBAL":
            # Two raw lines, as the unpickler reads them (pickletools would
            # unescape them, and warn on a stray backslash).
            module, attr = f.readline(), f.readline()
            if not (module.endswith(b"\n") and attr.endswith(b"\n")):
                raise _fail(where, pos, "GLOBAL without its two lines")
            yield op.name, (module[:-1] + b" " + attr[:-1]).decode("latin-1"), pos
            continue
        yield op.name, (None if op.arg is None else op.arg.reader(f)), pos


class _Budget:
    """Counts decoded values and bytes against :data:`MAX_NODES` / :data:`MAX_BYTES`."""

    __slots__ = ("where", "nodes", "nbytes")

    def __init__(self, where: str):
        self.where, self.nodes, self.nbytes = where, 0, 0

    def add(self, pos: int, nodes: int = 0, nbytes: int = 0) -> None:
        self.nodes += nodes
        self.nbytes += nbytes
        if self.nodes > MAX_NODES:
            raise _fail(self.where, pos, f"more than {MAX_NODES} values (MAX_NODES; the "
                                         f"largest CIFAR file holds about 150,000)")
        if self.nbytes > MAX_BYTES:
            raise _fail(self.where, pos, f"more than {MAX_BYTES} bytes of strings (MAX_BYTES; "
                                         f"the largest CIFAR file holds about 155 MB)")


def load(data: bytes, where: str | Path) -> Any:
    """Decode a pickle holding only plain data and numeric numpy arrays.

    Work and memory are linear in ``len(data)``: a memo reference
    (``BINGET``/``LONG_BINGET``/``GET``) yields the very object stored, never a
    copy, and the result is capped at :data:`MAX_NODES` values,
    :data:`MAX_BYTES` bytes and :data:`MAX_DEPTH` levels of nesting.  The
    decoder itself never recurses deeper than :data:`MAX_DEPTH`.

    Parameters
    ----------
    data : bytes
        The file's content (at most :data:`MAX_FILE_BYTES` bytes).
    where : str or Path
        Named in error messages.

    Returns
    -------
    The unpickled value: dicts, lists, tuples, str, bytes, int, float, bool,
    None and ndarrays.  Python 2 ``str`` values come back as ``str``
    (latin-1), as the standard unpickler with ``encoding="latin1"`` would return them.
    Shared references stay shared.

    Raises
    ------
    FormatError
        Anything outside the whitelist, a malformed or truncated stream, or a
        stream over one of the limits; the message names ``where`` and the cause.
        No other exception escapes for any ``data``.
    """
    where = str(where)
    if len(data) > MAX_FILE_BYTES:
        raise FormatError(f"{where}: {len(data)} bytes is larger than any CIFAR python file "
                          f"(MAX_FILE_BYTES = {MAX_FILE_BYTES}); refusing to read it")
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    budget = _Budget(where)

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if isinstance(stack[i], _Mark):
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise ValueError("MARK missing")

    pos = 0
    try:
        for name, arg, pos in _ops(data, where):
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(stack) != 1:
                    raise _fail(where, pos, "stack not empty at STOP")
                return _finish(stack[0], where, 0, {}, set())
            if name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = stack[-1]
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
                continue
            budget.add(pos, nodes=1)
            if name == "MARK":
                stack.append(_MARK)
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name in _SCALARS:
                stack.append(arg)
            elif name in _STRINGS:
                budget.add(pos, nbytes=len(arg))
                stack.append(arg)
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if int(arg) not in memo:
                    raise _fail(where, pos, f"memo entry {int(arg)} read before it was written")
                stack.append(memo[int(arg)])  # the same object: shared, never copied
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise _fail(where, pos, f"{name} on a short stack")
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name in ("APPEND", "APPENDS"):
                items = [stack.pop()] if name == "APPEND" else pop_mark()
                if not isinstance(stack[-1], list):
                    raise _fail(where, pos, f"{name} on {_kind(stack[-1])}")
                stack[-1].extend(items)
            elif name in ("SETITEM", "SETITEMS"):
                items = stack[-2:] if name == "SETITEM" else pop_mark()
                if name == "SETITEM":
                    if len(items) != 2:
                        raise _fail(where, pos, "SETITEM on a short stack")
                    del stack[-2:]
                target = stack[-1]
                if not isinstance(target, dict) or len(items) % 2:
                    raise _fail(where, pos, f"{name} on {_kind(target)}")
                for k, v in zip(items[::2], items[1::2]):
                    if not isinstance(k, (str, bytes, int)):
                        raise _fail(where, pos, f"dict key of type {type(k).__name__}")
                    target[k] = v
            elif name == "GLOBAL":
                qualified = str(arg)
                if qualified not in _ALLOWED_GLOBALS:
                    raise _fail(where, pos, f"global {qualified[:80]!r} is not allowed")
                stack.append(_Global(qualified))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise _fail(where, pos, f"global named by {_kind(module)} and {_kind(attr)}")
                qualified = f"{module} {attr}"
                if qualified not in _ALLOWED_GLOBALS:
                    raise _fail(where, pos, f"global {qualified[:80]!r} is not allowed")
                stack.append(_Global(qualified))
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                value = _reduce(func, args, where, pos)
                if isinstance(value, bytes):
                    budget.add(pos, nbytes=len(value))
                stack.append(value)
            elif name == "BUILD":
                state = stack.pop()
                _build(stack[-1], state, where, pos)
            else:
                raise _fail(where, pos, f"opcode {name} is not allowed")
    except FormatError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, EOFError,
            RecursionError, MemoryError) as exc:
        # ValueError covers genops' own complaints (unknown opcode, short argument,
        # bad UTF-8, an INT of more than 4300 digits); the others a malformed stack.
        raise FormatError(f"{where}: corrupt or truncated pickle at byte {pos} "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    raise FormatError(f"{where}: truncated pickle (no STOP opcode)")


def _reduce(func: Any, args: Any, where: str, pos: int) -> Any:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise _fail(where, pos, "REDUCE of something other than an allowed global")
    if func.name in _RECONSTRUCT:
        if not (len(args) == 3 and isinstance(args[0], _Global) and args[0].name == _NDARRAY
                and _int_tuple(args[1]) and _as_bytes(args[2]) == b"b"):
            raise _fail(where, pos, "unexpected arguments to numpy's _reconstruct")
        return _Array()
    if func.name == _DTYPE:
        if not (len(args) == 3 and isinstance(args[0], str) and args[0] in _DTYPE_CODES
                and args[1] in (0, False) and args[2] in (1, True)):
            code = _kind(args[0]) if args else "nothing"
            raise _fail(where, pos, f"dtype {code} is not a plain numeric dtype")
        return _DType(args[0])
    if func.name == _ENCODE:
        if not (len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1")):
            raise _fail(where, pos, "unexpected arguments to _codecs.encode")
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            raise _fail(where, pos, "_codecs.encode of text outside latin-1") from None
    raise _fail(where, pos, f"{func.name} cannot be called")


def _build(target: Any, state: Any, where: str, pos: int) -> None:
    if isinstance(target, _DType):
        if not (isinstance(state, tuple) and len(state) >= 2 and state[0] in (3, 4)
                and state[1] in ("|", "<", ">", "=")
                and all(s is None or type(s) is int for s in state[2:])):
            raise _fail(where, pos, "unexpected numpy dtype state")
        target.endian = state[1]
        return
    if isinstance(target, _Array) and target.array is None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and _int_tuple(state[1]) and isinstance(state[2], _DType)
                and state[3] in (0, 1, False, True)):
            raise _fail(where, pos, "unexpected numpy array state")
        raw = _as_bytes(state[4])
        dtype = state[2].numpy()
        shape = state[1]
        # Python ints: a product of crafted dimensions cannot wrap around.
        count = math.prod(shape)
        if raw is None or len(raw) != count * dtype.itemsize:
            raise _fail(where, pos, f"array data of {len(raw) if raw is not None else '?'} "
                                    f"bytes does not fit shape {shape[:8]} of {dtype}")
        array = np.frombuffer(raw, dtype, count).reshape(shape, order="F" if state[3] else "C")
        target.array = array.astype(dtype.newbyteorder("="), copy=True)
        return
    raise _fail(where, pos, f"BUILD on {_kind(target)}")


def _finish(value: Any, where: str, depth: int, done: dict[int, Any], active: set[int]) -> Any:
    """Replace the array placeholders by arrays; refuse leftovers, cycles and deep nesting.

    ``done`` maps ``id(container)`` to its finished copy, so a container
    referenced many times (through the memo) is finished once and shared: the
    work is linear in the number of distinct containers, and recursion never
    goes deeper than :data:`MAX_DEPTH`.
    """
    if isinstance(value, _Array):
        if value.array is None:
            raise FormatError(f"{where}: an array without its data")
        return value.array
    if isinstance(value, (_Global, _DType, _Mark)):
        raise FormatError(f"{where}: a bare {type(value).__name__.strip('_')} where data belong")
    if not isinstance(value, (dict, list, tuple)):
        return value
    key = id(value)
    if key in done:
        return done[key]
    if key in active:
        raise FormatError(f"{where}: a container holds itself (cyclic nesting); not a CIFAR file")
    if depth >= MAX_DEPTH:
        raise FormatError(f"{where}: nesting deeper than {MAX_DEPTH} levels; not a CIFAR file")
    active.add(key)
    if isinstance(value, dict):
        out: Any = {k: _finish(v, where, depth + 1, done, active) for k, v in value.items()}
    elif isinstance(value, list):
        out = [_finish(v, where, depth + 1, done, active) for v in value]
    else:
        out = tuple(_finish(v, where, depth + 1, done, active) for v in value)
    active.discard(key)
    done[key] = out
    return out
