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
_MAX_DEPTH = 4  # CIFAR files are a dict of lists at most; deeper nesting is refused


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


def _fail(where: str, pos: int, why: str) -> FormatError:
    return FormatError(f"{where}: not a plain-data CIFAR pickle: {why} (at byte {pos}); "
                       f"refusing to read it")


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


def load(data: bytes, where: str | Path) -> Any:
    """Decode a pickle holding only plain data and numeric numpy arrays.

    Parameters
    ----------
    data : bytes
        The file's content.
    where : str or Path
        Named in error messages.

    Returns
    -------
    The unpickled value: dicts, lists, tuples, str, bytes, int, float, bool,
    None and ndarrays.  Python 2 ``str`` values come back as ``str``
    (latin-1), as the standard unpickler with ``encoding="latin1"`` would return them.

    Raises
    ------
    FormatError
        Anything outside the whitelist, or a malformed stream.
    """
    where = str(where)
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if isinstance(stack[i], _Mark):
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise ValueError("MARK missing")

    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(stack) != 1:
                    raise _fail(where, pos, "stack not empty at STOP")
                return _finish(stack[0], where, 0)
            if name == "MARK":
                stack.append(_Mark())
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "BINFLOAT",
                          "SHORT_BINSTRING", "BINSTRING", "BINUNICODE", "SHORT_BINUNICODE",
                          "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
                stack.append(arg)
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if int(arg) not in memo:
                    raise _fail(where, pos, f"memo entry {arg} read before it was written")
                stack.append(memo[int(arg)])
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
                    raise _fail(where, pos, f"{name} on a {type(stack[-1]).__name__}")
                stack[-1].extend(items)
            elif name in ("SETITEM", "SETITEMS"):
                items = stack[-2:] if name == "SETITEM" else pop_mark()
                if name == "SETITEM":
                    del stack[-2:]
                target = stack[-1]
                if not isinstance(target, dict) or len(items) % 2:
                    raise _fail(where, pos, f"{name} on a {type(target).__name__}")
                for k, v in zip(items[::2], items[1::2]):
                    if not isinstance(k, (str, bytes, int)):
                        raise _fail(where, pos, f"dict key of type {type(k).__name__}")
                    target[k] = v
            elif name == "GLOBAL":
                qualified = str(arg)
                if qualified not in _ALLOWED_GLOBALS:
                    raise _fail(where, pos, f"global {qualified!r} is not allowed")
                stack.append(_Global(qualified))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                qualified = f"{module} {attr}"
                if not (isinstance(module, str) and isinstance(attr, str)) \
                        or qualified not in _ALLOWED_GLOBALS:
                    raise _fail(where, pos, f"global {qualified!r} is not allowed")
                stack.append(_Global(qualified))
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                stack.append(_reduce(func, args, where, pos))
            elif name == "BUILD":
                state = stack.pop()
                _build(stack[-1], state, where, pos)
            else:
                raise _fail(where, pos, f"opcode {name} is not allowed")
    except FormatError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, EOFError) as exc:
        raise FormatError(f"{where}: corrupt or truncated pickle ({exc})") from None
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
            raise _fail(where, pos, f"dtype {args[:1]!r} is not a plain numeric dtype")
        return _DType(args[0])
    if func.name == _ENCODE:
        if not (len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1")):
            raise _fail(where, pos, "unexpected arguments to _codecs.encode")
        return args[0].encode("latin-1")
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
        count = int(np.prod(shape, dtype=np.int64))
        if raw is None or len(raw) != count * dtype.itemsize:
            raise _fail(where, pos, f"array data of {len(raw) if raw is not None else '?'} "
                                    f"bytes does not fit shape {shape} of {dtype}")
        array = np.frombuffer(raw, dtype, count).reshape(shape, order="F" if state[3] else "C")
        target.array = array.astype(dtype.newbyteorder("="), copy=True)
        return
    raise _fail(where, pos, f"BUILD on a {type(target).__name__}")


def _finish(value: Any, where: str, depth: int) -> Any:
    """Replace the array placeholders by arrays; refuse leftovers and deep nesting."""
    if depth > _MAX_DEPTH:
        raise FormatError(f"{where}: nesting deeper than {_MAX_DEPTH} levels; not a CIFAR file")
    if isinstance(value, _Array):
        if value.array is None:
            raise FormatError(f"{where}: an array without its data")
        return value.array
    if isinstance(value, (_Global, _DType, _Mark)):
        raise FormatError(f"{where}: a bare {type(value).__name__.strip('_')} where data belong")
    if isinstance(value, dict):
        return {k: _finish(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_finish(v, where, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_finish(v, where, depth + 1) for v in value)
    return value
