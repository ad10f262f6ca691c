"""Bounded JSON parsing: ``json.loads`` that a hostile text cannot make hang, recurse or balloon.

The model-file reader parses JSON it did not write (the safetensors header
and the imgcls metadata document), so :func:`bounded_loads` refuses, with
the cause, what Python's ``json`` would accept or choke on:

* **nesting depth** above a limit: measured without recursion before
  parsing (:func:`nesting_depth`), so a deep text cannot exhaust the
  interpreter's recursion limit;
* **NaN and Infinity** (``NaN``, ``Infinity``, ``1e999``): not JSON, and no
  model value is ever non-finite;
* **integers of more than** :data:`MAX_INT_DIGITS` **digits**: Python's
  ``int()`` parses in quadratic time;
* **repeated keys** in one object: ``json`` would keep the last silently,
  so two readers could see two different documents.

Every refusal raises :class:`Refused` (a ``ValueError``); text that is not
JSON raises ``json``'s own ``ValueError``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

__all__ = ["Refused", "bounded_loads", "nesting_depth", "MAX_INT_DIGITS"]

# digits of a JSON integer: int64/uint64 need 20; Python's int() parses in
# quadratic time and refuses more than 4300 digits by default
MAX_INT_DIGITS = 100


class Refused(ValueError):
    """A JSON token the reader does not accept (raised from json.loads's hooks)."""


def _refuse_constant(token: str) -> Any:
    raise Refused(f"{token} is not a number (JSON has no NaN or Infinity)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(f"{text[:40]} is not a finite number")
    return value


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise Refused(f"an integer with {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise Refused(f"the key {dup[:60]!r} appears twice in one object")
    return out


# Strings are removed in two linear passes: first every escape (a backslash and
# the character after it, left to right, so an escaped backslash or an escaped
# quote goes whole), then every quote-to-quote run.  A single pattern for
# strings with escapes would rescan the rest of the text from every quote of an
# unterminated string (quadratic time).
_JSON_ESCAPE = re.compile(r"\\.", re.S)
_PLAIN_STRING = re.compile(r'"[^"]*"')
# bytes scanned per numpy step when measuring nesting (bounded memory)
_DEPTH_CHUNK = 1 << 20


def nesting_depth(text: str, limit: int) -> int:
    """The deepest bracket nesting of JSON ``text``, outside strings, without recursion.

    Returns 0 at once when there are too few brackets to exceed ``limit``
    (most files); otherwise strings are removed (in linear time) and the
    running depth is a cumulative sum of +1 per ``[``/``{`` and -1 per
    ``]``/``}``, taken in bounded chunks.  Brackets are ASCII, so they are
    single bytes in UTF-8.  Text that is not JSON may be measured deeper than
    a parser would get, never shallower: a backslash outside a string ends
    the parse where the count is still exact.
    """
    if text.count("[") + text.count("{") <= limit:
        return 0
    skeleton = _PLAIN_STRING.sub("", _JSON_ESCAPE.sub("", text))
    raw = skeleton.encode("utf-8", "replace")
    deepest = level = 0
    for start in range(0, len(raw), _DEPTH_CHUNK):
        b = np.frombuffer(raw, np.uint8, count=min(_DEPTH_CHUNK, len(raw) - start),
                          offset=start)
        steps = ((b == ord("[")).astype(np.int64) + (b == ord("{"))
                 - (b == ord("]")) - (b == ord("}")))
        running = np.cumsum(steps) + level
        deepest = max(deepest, int(running.max()))
        level = int(running[-1])
    return deepest


def bounded_loads(text: str, max_depth: int) -> Any:
    """``json.loads`` bounded: nesting, NaN/Infinity, huge numbers and repeated keys refused.

    Raises ``Refused`` (a ValueError) with the cause, or ``ValueError`` for
    text that is not JSON.
    """
    depth = nesting_depth(text, max_depth)
    if depth > max_depth:
        raise Refused(f"nested deeper than {max_depth} levels ({depth})")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float,
                          parse_int=_parse_int, object_pairs_hook=_unique_keys)
    except RecursionError:  # not reachable after the depth scan; kept as a guarantee
        raise Refused("nested too deeply") from None
