"""The tagged JSON codec and the canonical payload hash."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgcls.io.codec import DecodeError, EncodeError, decode, encode, tensor_sha256

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**62, 2**62), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(-5, 5)), inner, max_size=4),
    ),
    max_leaves=20,
)


def _same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    else:
        assert a == b


@settings(max_examples=200, deadline=None)
@given(values)
def test_round_trip_through_strict_json(value):
    text = json.dumps(encode(value, "v"), allow_nan=False)
    _same(decode(json.loads(text), "v"), value)


@pytest.mark.parametrize("value", [
    np.int64(3), np.float32(0.5), np.bool_(True), np.uint8(200), np.float64("nan"),
    np.array(["a", "bcd"]), np.array([[b"x", b"\xff"]]), np.array([], dtype="<U1"),
    np.array([{"a": 1}, (1, 2), None], dtype=object), np.zeros((2, 0), dtype="<U2"),
    np.array([[1.5, np.nan], [np.inf, 0.0]], dtype=np.float32), np.array(3, dtype=np.int16),
    np.array([True, False]), np.arange(3, dtype=">i4"),
])
def test_numpy_values(value):
    out = decode(json.loads(json.dumps(encode(value, "v"), allow_nan=False)), "v")
    assert type(out) is type(value)
    if isinstance(value, np.ndarray):
        assert out.dtype.name == value.dtype.name and out.shape == value.shape
        assert [repr(x) for x in out.ravel().tolist()] == [repr(x) for x in value.ravel().tolist()]
    elif np.isnan(value):
        assert np.isnan(out) and out.dtype == value.dtype
    else:
        assert out == value and out.dtype == value.dtype


def test_plain_dicts_stay_readable():
    assert encode({"k": 3, "metric": "l2"}, "p") == {"k": 3, "metric": "l2"}
    assert encode({1: "a"}, "p") == {"$dict": [[1, "a"]]}
    assert encode({"$tuple": 1}, "p") == {"$dict": [["$tuple", 1]]}
    assert decode({"$dict": [["$tuple", 1]]}, "p") == {"$tuple": 1}


@pytest.mark.parametrize("value, message", [
    (object(), "x: a builtins.object is not a JSON value"),
    ({"a": [1, {2}]}, r"x\['a'\]\[1\]: a builtins.set"),
    (np.array([1j]), "x: an array of dtype complex128 cannot be stored"),
    (np.complex128(1j), "x: a numpy complex128 scalar cannot be stored"),
])
def test_encode_rejects(value, message):
    with pytest.raises(EncodeError, match=message):
        encode(value, "x")


@pytest.mark.parametrize("value, message", [
    ({"$eval": "__import__('os')"}, "unknown or malformed tag"),
    ({"$tuple": [1], "extra": 2}, "exactly one key"),
    ({"$scalar": ["object", 1]}, "unknown or malformed tag"),
    ({"$scalar": ["int8", 1000]}, r"bad \$scalar value"),
    ({"$array": ["float64", [3], [1.0, 2.0]]}, "stated shape"),
    ({"$array": ["V8", [1], [1]]}, "holds numbers, strings or objects"),
    ({"$array": ["<U300000", [1], ["a"]]}, "holds numbers, strings or objects"),
    ({"$array": ["int8", [1], [1000]]}, r"bad \$array value"),
    ({"$array": ["<U2", [3], ["a", "b"]]}, "stated shape"),
    ({"$array": ["<U2", [-1], []]}, "bad array shape"),
    ({"$array": ["object", [2], [1]]}, "stated shape"),
    ({"$dict": [[1]]}, r"not a \[key, value\] pair"),
    ({"$dict": [[[1], 2]]}, "a list cannot be a dict key"),
    ({"$float": "1e999"}, "unknown or malformed tag"),
])
def test_decode_rejects(value, message):
    with pytest.raises(DecodeError, match=message):
        decode(value, "x")


def test_tensor_hash_is_canonical():
    a = {"W_": np.arange(6, dtype=np.float32).reshape(2, 3), "b_": np.zeros(2)}
    h = tensor_sha256(a)
    assert tensor_sha256(dict(reversed(list(a.items())))) == h  # order of the dict
    assert tensor_sha256({"W_": np.asfortranarray(a["W_"]), "b_": a["b_"]}) == h  # layout
    assert tensor_sha256({"W_": a["W_"].astype(">f4"), "b_": a["b_"]}) == h  # byte order
    # but every change of name, dtype, shape or value changes it
    assert tensor_sha256({"W": a["W_"], "b_": a["b_"]}) != h
    assert tensor_sha256({"W_": a["W_"].astype(np.float64), "b_": a["b_"]}) != h
    assert tensor_sha256({"W_": a["W_"].reshape(3, 2), "b_": a["b_"]}) != h
    changed = a["W_"].copy()
    changed[0, 0] = 0.5
    assert tensor_sha256({"W_": changed, "b_": a["b_"]}) != h
    assert tensor_sha256({}) != tensor_sha256({"x_": np.zeros(0)})
