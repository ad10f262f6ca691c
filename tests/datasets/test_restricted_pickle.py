"""The restricted CIFAR-python reader: shared references, limits, and typed errors only."""

import pickle
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets_helpers import py2_pickle
from imgcls.datasets import restricted_pickle
from imgcls.datasets.restricted_pickle import load
from imgcls.errors import FormatError

WHERE = "/data/cifar-10-batches-py/data_batch_1"


def _shared_lists(levels: int, fanout: int) -> bytes:
    """A protocol-2 pickle of ``levels`` nested lists, each holding ``fanout``
    references (``BINPUT`` once, then ``BINGET``) to the same list one level down.

    Expanded into copies it would hold ``fanout ** levels`` ints; as references
    it is a few hundred bytes.
    """
    def level(n: int) -> bytes:
        if n == 0:
            return b"](" + b"K\x01" * fanout + b"e"
        memo = bytes([n - 1])
        return b"](" + level(n - 1) + b"q" + memo + (b"h" + memo) * (fanout - 1) + b"e"

    return b"\x80\x02" + level(levels) + b"."


def _deep_list(depth: int) -> bytes:
    """``depth`` nested empty lists, built without recursion (EMPTY_LIST..., APPEND...)."""
    return b"]" * depth + b"a" * (depth - 1)


def test_memo_reference_returns_the_same_object_not_a_copy():
    out = load(_shared_lists(2, 3), WHERE)
    assert out[0] is out[1] is out[2]
    assert out[0][0] is out[0][1]
    assert out[0][0] == [1, 1, 1]


def test_shared_references_cost_linear_time_and_memory():
    # 40 ** 3 = 64,000 lists of 40 entries when expanded into copies (tens of MB);
    # shared, the result is four lists.
    blob = _shared_lists(3, 40)
    assert len(blob) < 400
    tracemalloc.start()
    try:
        start = time.perf_counter()
        out = load(blob, WHERE)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(out) == 40 and out[0][0][0] == [1] * 40
    assert peak < 1 << 20, f"peak {peak} bytes for a {len(blob)}-byte file"
    assert elapsed < 0.5


def test_value_count_is_capped(monkeypatch):
    monkeypatch.setattr(restricted_pickle, "MAX_NODES", 100)
    blob = pickle.dumps(list(range(200)), protocol=2)
    with pytest.raises(FormatError, match=f"{WHERE}.*more than 100 values"):
        load(blob, WHERE)
    assert load(pickle.dumps(list(range(40)), protocol=2), WHERE) == list(range(40))


def test_byte_count_is_capped(monkeypatch):
    monkeypatch.setattr(restricted_pickle, "MAX_BYTES", 1000)
    monkeypatch.setattr(restricted_pickle, "MAX_FILE_BYTES", 1100)
    # under 1000 bytes of file, over 1000 decoded: protocol 2 pickles bytes as
    # text, then encodes it, so the array data is decoded twice
    blob = pickle.dumps(["a" * 100, np.zeros(500, np.uint8)], protocol=2)
    assert len(blob) < 1000
    with pytest.raises(FormatError, match=f"{WHERE}.*more than 1000 bytes of strings"):
        load(blob, WHERE)
    with pytest.raises(FormatError, match=f"{WHERE}: 1200 bytes is larger than any CIFAR"):
        load(b"\x80\x02" + b"N" * 1197 + b".", WHERE)


def test_limits_admit_the_largest_official_file():
    # CIFAR-100 ``train``: 50000 x 3072 pixel bytes, 3 lists of 50000 entries.
    n = 50_000
    assert 2 * n * 3072 + n * 40 < restricted_pickle.MAX_BYTES
    assert int(1.5 * n * 3072) + n * 100 < restricted_pickle.MAX_FILE_BYTES
    assert 3 * n * 3 < restricted_pickle.MAX_NODES  # three lists, a margin of three


@pytest.mark.parametrize("blob, msg", [
    # a global named by a list nested 100,000 deep (its repr alone would recurse)
    (b"\x80\x04" + _deep_list(100_000) + b"\x8c\x01x\x93.", "global named by a list"),
    # numpy.dtype called with the same deep list as its type code
    (b"\x80\x02cnumpy\ndtype\n" + _deep_list(100_000) + b"K\x00K\x01\x87R.",
     "dtype a list is not a plain numeric dtype"),
    # the deep list as the result
    (b"\x80\x02" + _deep_list(100_000) + b".", "nesting deeper than 4 levels"),
])
def test_deep_nesting_is_a_format_error_not_a_recursion_error(blob, msg):
    with pytest.raises(FormatError, match=f"{WHERE}.*{msg}"):
        load(blob, WHERE)


def test_global_lines_are_read_raw_without_unescaping_or_warnings():
    # pickletools would unescape the line and warn about "\]" (an error under -W error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FormatError, match=r"global 'os\\\\\] system' is not allowed"):
            load(b"\x80\x02cos\\]\nsystem\n.", WHERE)
        with pytest.raises(FormatError, match="GLOBAL without its two lines"):
            load(b"\x80\x02cos\nsys", WHERE)


def test_cycle_through_the_memo_is_refused():
    lst = []
    lst.append(lst)
    with pytest.raises(FormatError, match=f"{WHERE}.*cyclic"):
        load(pickle.dumps([lst], protocol=2), WHERE)


def test_array_shape_whose_product_wraps_int64_is_refused():
    # (2**32, 2**32) x 1 byte wraps to 0 in int64 and would match 0 bytes of data
    blob = bytearray(pickle.dumps(np.zeros((0, 0), np.uint8), protocol=3))
    shape_at = blob.index(b"K\x00K\x00\x86")  # BININT1 0, BININT1 0, TUPLE2 in the state
    big = b"\x8a\x05\x00\x00\x00\x00\x01"  # LONG1 2**32
    blob[shape_at:shape_at + 4] = big + big
    with pytest.raises(FormatError, match=f"{WHERE}.*does not fit shape"):
        load(bytes(blob), WHERE)


# --- properties ---

_keys = st.one_of(st.text(max_size=8), st.binary(min_size=1, max_size=8), st.integers(-1000, 1000))
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False), st.text(max_size=20),
                     st.binary(min_size=1, max_size=20))
# (an empty bytes object pickles at protocol 2 as a call of ``bytes()``, which no
# CIFAR file holds and the reader refuses)


def _nested(depth: int):
    if depth == 0:
        return _scalars
    inner = _nested(depth - 1)
    return st.one_of(_scalars, st.lists(inner, max_size=4),
                     st.tuples(inner, inner), st.dictionaries(_keys, inner, max_size=4))


@settings(max_examples=150, deadline=None)
@given(value=_nested(3), protocol=st.sampled_from([2, 3, 4, 5]))
def test_plain_data_round_trips(value, protocol):
    assert load(pickle.dumps(value, protocol=protocol), WHERE) == value


_VALID = py2_pickle({b"batch_label": b"training batch 1 of 5",
                     b"labels": [3, 1, 4],
                     b"data": np.arange(3 * 3072).astype(np.uint8).reshape(3, 3072),
                     b"filenames": [b"a.png", b"b.png", b"c.png"]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_batches_load_or_raise_format_error(data):
    blob = bytearray(_VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if action == "set":
            blob[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del blob[at:at + data.draw(st.integers(1, 8))]
        else:
            del blob[at:]
        if not blob:
            blob = bytearray(b"\x80")
    try:
        load(bytes(blob), WHERE)
    except FormatError as exc:
        assert WHERE in str(exc) and "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=200))
def test_arbitrary_bytes_load_or_raise_format_error(blob):
    try:
        load(b"\x80\x02" + blob, WHERE)
    except FormatError as exc:
        assert WHERE in str(exc)
