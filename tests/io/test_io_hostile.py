"""Model files crafted to hurt: every one is a ModelFileError naming the file, fast and small.

Each test here is a regression test for a class of defect found by trying the
reader as an attacker would: unbounded nesting, non-finite or huge numbers,
shapes that claim more than the file holds, learned attributes that do not
fit the estimator, parameters the estimator refuses, non-regular files and a
zero header length.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
import tracemalloc

import numpy as np
import pytest
from io_helpers import REGISTRY, Centroid, data, edit_metadata, read_parts, write_parts

from imgcls.errors import ModelFileError
from imgcls.io import load, read_metadata, save
from imgcls.io.codec import DecodeError, decode


@pytest.fixture
def victim(tmp_path, model_file):
    bad = tmp_path / "bad.safetensors"
    shutil.copyfile(model_file, bad)
    return bad


def _fails(path, message, registry=REGISTRY, **kw):
    with pytest.raises(ModelFileError, match=message) as info:
        load(path, registry=registry, **kw)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    return info.value


def _set_metadata_text(path, text):
    """Replace the imgcls metadata string as raw text (it need not be valid JSON)."""
    header, body = read_parts(path)
    header["__metadata__"]["imgcls"] = text
    write_parts(path, header, body)


def _doc_text_with(path, placeholder_change, token):
    """The metadata text after ``placeholder_change(doc)``, with "@@" replaced by ``token``."""
    header, _ = read_parts(path)
    doc = json.loads(header["__metadata__"]["imgcls"])
    placeholder_change(doc)
    return json.dumps(doc).replace('"@@"', token)


# ------------------------------------------------------------------ nesting depth

DEEP = 5000  # well past Python's default recursion limit of 1000


def test_deeply_nested_metadata(victim):
    text = _doc_text_with(victim, lambda d: d["params"].update(tags="@@"),
                          "[" * DEEP + "]" * DEEP)
    _set_metadata_text(victim, text)
    _fails(victim, "nested deeper than")


def test_deeply_nested_safetensors_header(victim):
    header, body = read_parts(victim)
    text = json.dumps(header)
    assert text.endswith("}")
    text = text[:-1] + ', "deep": ' + "{\"a\": " * DEEP + "1" + "}" * DEEP + "}"
    raw = text.encode()
    victim.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    _fails(victim, "nested deeper than")


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path, fitted):
    model, _ = fitted
    names = ["[" * 300, "{" * 300 + '\\"', "]]]"]
    path = save(model, tmp_path / "m.st", classes=names, registry=REGISTRY)
    assert load(path, registry=REGISTRY).class_names_ == names


def test_depth_scan_is_linear_in_time(victim):
    import time

    from imgcls.io.jsonbounds import nesting_depth

    # an unterminated string full of escaped quotes, with enough brackets to
    # be measured: one regular expression for escaped strings took 15 s here
    text = '"' + '\\"' * 20000 + "[" * 200
    t0 = time.perf_counter()
    assert nesting_depth(text, 8) == 200  # unterminated: counted, as if not in a string
    assert time.perf_counter() - t0 < 0.5
    _set_metadata_text(victim, text)
    _fails(victim, "corrupt imgcls metadata")


def test_decode_depth_is_bounded():
    value = 1
    for _ in range(DEEP):
        value = [value]
    with pytest.raises(DecodeError, match="nested deeper than"):
        decode(value, "x")
    tagged = 1
    for _ in range(DEEP):
        tagged = {"$tuple": [tagged]}
    with pytest.raises(DecodeError, match="nested deeper than"):
        decode(tagged, "x")


def test_decode_memory_with_long_keys_at_every_level():
    # every level's error location once held its parent's: 90 levels of 50 KB
    # keys cost 200 MB of location strings for 4.5 MB of input
    value = 1
    for i in range(90):
        value = {f"{i}" + "k" * 50_000: value}
    tracemalloc.start()
    try:
        decode(value, "x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2 ** 20


# ------------------------------------------------------------------ numbers

@pytest.mark.parametrize("token, cause", [
    ("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
    ("1e999", "not a finite number"), ("-1e999", "not a finite number"),
    ("1" * 5000, "integer with 5000 digits"),
])
def test_non_finite_and_huge_numbers_in_metadata(victim, token, cause):
    text = _doc_text_with(victim, lambda d: d["params"].update(shrink="@@"), token)
    _set_metadata_text(victim, text)
    _fails(victim, cause)
    with pytest.raises(ModelFileError, match=cause):
        read_metadata(victim)


@pytest.mark.parametrize("token", ["NaN", "1e999", "9" * 5000])
def test_non_finite_and_huge_numbers_in_the_header(victim, token):
    header, body = read_parts(victim)
    text = json.dumps(header)
    text = text[:-1] + ', "x": ' + token + "}"
    raw = text.encode()
    victim.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    _fails(victim, "header")


# ------------------------------------------------------------------ claimed shapes

@pytest.mark.parametrize("array, message", [
    (["object", [2 ** 26], []], "stated shape"),       # 512 MiB of pointers before
    (["object", [2 ** 62], []], "stated shape"),       # MemoryError before
    (["float64", [2 ** 62, 0], []], "stated shape"),
    (["float64", [0, 2 ** 62], []], "array"),          # numpy cannot address it
    (["float64", [0, 784], []], None),                 # empty: fine, nothing allocated
    (["<U262144", [2000], ["a"] * 2000], "larger than its values"),  # 2 GB of UCS-4
    (["|S1048576", [100], ["a"] * 100], "larger than its values"),
    (["int64", [1] * 40, [1]], "dimensions"),
    (["<U2", [2 ** 40], ["a"]], "stated shape"),
])
def test_tagged_array_shape_checked_before_allocation(array, message):
    tracemalloc.start()
    try:
        if message is None:
            assert decode({"$array": array}, "x").shape == tuple(array[1])
        else:
            with pytest.raises(DecodeError, match=message):
                decode({"$array": array}, "x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2 ** 20


def test_tagged_array_in_a_file(victim):
    edit_metadata(victim, lambda d: d["attributes"].update(
        huge_={"json": {"$array": ["object", [2 ** 40], []]}}))
    _fails(victim, "huge_.*stated shape")


def test_scalar_must_hold_a_number():
    with pytest.raises(DecodeError, match=r"bad \$scalar value"):
        decode({"$scalar": ["float64", [[1, 2], [3, 4]]]}, "x")


# ------------------------------------------------------------------ learned attributes

def _save_with(tmp_path, model, change, name="m.safetensors", registry=REGISTRY, **kw):
    change(model)
    return save(model, tmp_path / name, registry=registry, **kw)


def test_read_only_property_as_attribute(tmp_path):
    from imgcls.linear import Softmax

    X, y = data(n=30, shape=(4, 4, 1))
    path = save(Softmax(epochs=1, random_state=0).fit(X, y), tmp_path / "sm.safetensors")
    edit_metadata(path, lambda d: d["attributes"].update(templates_={"json": 1}))
    _fails(path, "templates_", registry=None)


@pytest.mark.parametrize("member", [property(lambda self: 1), lambda self: 1,
                                    staticmethod(len)])
def test_class_level_name_on_a_registered_class(victim, member):
    edit_metadata(victim, lambda d: d["attributes"].update(predict_={"json": 1}))
    Centroid.predict_ = member
    try:
        _fails(victim, "predict_.*class attribute")
    finally:
        del Centroid.predict_


def test_plain_class_level_default_may_be_shadowed(victim):
    edit_metadata(victim, lambda d: d["attributes"].update(extra_={"json": 1}))
    Centroid.extra_ = None
    try:
        assert load(victim, registry=REGISTRY).extra_ == 1
    finally:
        del Centroid.extra_


@pytest.mark.parametrize("classes, stored, message", [
    (np.array(3), None, "classes_: must be a numpy array of at least one axis, got a 0-d"),
    ([0, 1, 2], [[1], [2, 3], [4]], "classes_: must be a numpy array"),   # ragged
    (7, None, "classes_: must be a numpy array"),
])
def test_bad_classes_on_a_registered_class(tmp_path, fitted, classes, stored, message):
    model, _ = fitted

    def change(m):
        m.classes_ = classes
    path = _save_with(tmp_path, model, change)

    def edit(d):
        d["class_names"] = ["a", "b", "c"]
        if stored is not None:
            d["attributes"]["classes_"] = {"json": stored}
    edit_metadata(path, edit)
    _fails(path, message)


@pytest.mark.parametrize("names", [[["a"], "b", "c"], ["a", "b"], "abc", [1, 2, 3], {"a": 1}])
def test_class_names_must_be_one_str_per_class(victim, names):
    edit_metadata(victim, lambda d: d.update(class_names=names))
    _fails(victim, "class_names")


@pytest.mark.parametrize("shape", [(2 ** 31, 2 ** 31), (4, 4, 2), (4, -4, -1), (4.0, 4, 1),
                                   [4, 4, 1]])
def test_image_shape_must_match_n_features(tmp_path, fitted, shape):
    model, _ = fitted

    def change(m):
        m.image_shape_ = shape
    path = _save_with(tmp_path, model, change)
    _fails(path, "image_shape_")


def test_descriptive_metadata_must_match_the_attributes(victim):
    edit_metadata(victim, lambda d: d["input"].update(n_features=17))
    _fails(victim, "input")
    edit_metadata(victim, lambda d: (d["input"].update(n_features=16),
                                     d["classes"].update(values=[0, 1, 5])))
    _fails(victim, "classes")


def test_no_learned_attributes(victim):
    def change(d):
        d["attributes"] = {}
        d["classes"] = None
        d["class_names"] = None
        d["input"] = {"image_shape": None, "n_features": None}
    header, _ = read_parts(victim)
    header = {"__metadata__": header["__metadata__"]}
    write_parts(victim, header, b"")
    edit_metadata(victim, change)
    from imgcls.io.codec import tensor_sha256

    edit_metadata(victim, lambda d: d.update(payload_sha256=tensor_sha256({})))
    _fails(victim, "holds no learned attributes")


# built-in estimators: parameters and learned attributes through their schema

def _knn_file(tmp_path, change=None, **params):
    from imgcls.neighbors import KNearestNeighbor

    X, y = data(n=30, shape=(4, 4, 1))
    model = KNearestNeighbor(**params).fit(X, y)
    if change is not None:
        change(model)
    return save(model, tmp_path / "knn.safetensors", classes=["a", "b", "c"])


def _softmax_file(tmp_path, change=None):
    from imgcls.linear import Softmax

    X, y = data(n=30, shape=(4, 4, 1))
    model = Softmax(epochs=1, random_state=0).fit(X, y)
    if change is not None:
        change(model)
    return save(model, tmp_path / "sm.safetensors")


@pytest.mark.parametrize("params, name", [
    ({"k": -5}, "k"), ({"metric": "nonsense"}, "metric"), ({"weights": "x"}, "weights"),
    ({"k": "3"}, "k"), ({"temperature": -1.0}, "temperature"),
])
def test_builtin_parameters_are_validated(tmp_path, params, name):
    path = _knn_file(tmp_path)
    edit_metadata(path, lambda d: d["params"].update(params))
    _fails(path, f"parameters rejected by KNearestNeighbor: The '{name}' parameter",
           registry=None)


def test_builtin_linear_parameters_are_validated(tmp_path):
    path = _softmax_file(tmp_path)
    edit_metadata(path, lambda d: d["params"].update(reg=-1.0))
    _fails(path, "parameters rejected by Softmax: The 'reg' parameter", registry=None)


def _shorter_y(m):
    m.y_fit_ = m.y_fit_[:-3]


def _y_out_of_range(m):
    m.y_fit_ = m.y_fit_ + 7


def _huge_image_shape(m):
    m.image_shape_ = (2 ** 31, 2 ** 31)


def _float_y(m):
    m.y_fit_ = m.y_fit_.astype(np.float64)


@pytest.mark.parametrize("change, attribute", [
    (_shorter_y, "y_fit_"), (_y_out_of_range, "y_fit_"), (_huge_image_shape, "image_shape_"),
    (_float_y, "y_fit_"),
])
def test_builtin_knn_attributes_are_consistent(tmp_path, change, attribute):
    path = _knn_file(tmp_path, change)
    _fails(path, attribute, registry=None)


def _fewer_classes(m):
    m.classes_ = m.classes_[:2]


def _bias_too_long(m):
    m.b_ = np.zeros(len(m.b_) + 1)


@pytest.mark.parametrize("change, attribute", [
    (_fewer_classes, "classes_|W_"), (_bias_too_long, "b_"),
])
def test_builtin_linear_attributes_are_consistent(tmp_path, change, attribute):
    path = _softmax_file(tmp_path, change)
    _fails(path, attribute, registry=None)


def test_builtin_round_trip_still_validates(tmp_path):
    assert load(_knn_file(tmp_path, k=3, metric="l2")).k == 3
    assert load(_softmax_file(tmp_path)).W_.shape == (3, 16)


# ------------------------------------------------------------------ files that are not files

def _in_thread(func, timeout=10.0):
    """Run ``func``; fail (instead of hanging the suite) if it blocks."""
    box = {}

    def target():
        try:
            box["value"] = func()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return t, box


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    t, box = _in_thread(lambda: load(fifo, registry=REGISTRY))
    if t.is_alive():  # release the blocked reader, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail("load blocked on a FIFO")
    assert isinstance(box.get("error"), ModelFileError), box
    assert "FIFO" in str(box["error"]) and str(fifo) in str(box["error"])
    with pytest.raises(ModelFileError, match="FIFO"):
        read_metadata(fifo)


def test_character_device_is_refused():
    with pytest.raises(ModelFileError, match="character device"):
        load("/dev/zero", registry=REGISTRY)


# ------------------------------------------------------------------ header length

@pytest.mark.parametrize("length", [0, 1])
def test_header_length_too_small(tmp_path, length):
    path = tmp_path / "zero.safetensors"
    # a header length of 0 once made the reader read everything after it
    path.write_bytes(struct.pack("<Q", length) + b"{}" + b" " * (1 << 20))
    _fails(path, f"header length {length}")


def test_trailing_bytes_after_the_tensors(victim):
    victim.write_bytes(victim.read_bytes() + b"\0" * 16)
    _fails(victim, "16 bytes after the tensor data")


@pytest.mark.parametrize("change, message", [
    (lambda h: h["W_"].update(dtype="BF16"), "dtype"),
    (lambda h: h["W_"].update(shape=[3, 17]), "shape"),
    (lambda h: h["W_"].update(shape=[3, -16]), "shape"),
    (lambda h: h["W_"].update(shape=[2 ** 62, 2 ** 62]), "shape"),
    (lambda h: h["W_"].update(data_offsets=[0, 8]), "offsets|bytes"),
    (lambda h: h["W_"].update(extra=1), "W_"),
    (lambda h: h.update(__metadata__={"imgcls": 5}), "metadata"),
])
def test_bad_tensor_entries(victim, change, message):
    header, body = read_parts(victim)
    change(header)
    write_parts(victim, header, body)
    _fails(victim, message)


def test_bool_tensor_bytes_must_be_0_or_1(tmp_path, fitted):
    model, _ = fitted
    model.mask_ = np.array([True, False, True])
    path = save(model, tmp_path / "m.st", registry=REGISTRY)
    header, body = read_parts(path)
    start, _ = header["mask_"]["data_offsets"]
    body = body[:start] + b"\x02" + body[start + 1:]
    write_parts(path, header, body)
    from imgcls.io.codec import tensor_sha256

    # with a consistent payload hash, the byte itself must be refused
    tensors = {k: v for k, v in vars(model).items() if k in header}
    tensors["mask_"] = np.frombuffer(b"\x02\x00\x01", dtype=np.uint8).view(bool)
    edit_metadata(path, lambda d: d.update(payload_sha256=tensor_sha256(tensors)))
    _fails(path, "mask_")
