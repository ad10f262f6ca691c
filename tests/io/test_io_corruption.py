"""Bad model files: each one a ModelFileError naming the file; nothing else touched."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
from io_helpers import REGISTRY, edit_metadata, read_parts, write_parts

from imgcls.errors import ModelFileError
from imgcls.io import load, read_metadata


@pytest.fixture
def victim(tmp_path, model_file):
    """A copy of a good model file to damage; the original must stay intact."""
    bad = tmp_path / "bad.safetensors"
    shutil.copyfile(model_file, bad)
    return bad


def _load_fails(path, message):
    """load raises ModelFileError naming the file; the directory is unchanged."""
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    with pytest.raises(ModelFileError, match=message) as info:
        load(path, registry=REGISTRY)
    assert str(path) in str(info.value)
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before
    return info.value


def _original_still_loads(model_file):
    assert load(model_file, registry=REGISTRY).shrink == 0.25


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file") as info:
        load(tmp_path / "nope.safetensors", registry=REGISTRY)
    assert "nope.safetensors" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="a directory, not a regular model file"):
        load(tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 8, 40, "header-1", "data/2", "data-1"])
def test_truncated(model_file, victim, keep):
    raw = victim.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    cut = {"header-1": 8 + n - 1, "data/2": 8 + n + (len(raw) - 8 - n) // 2,
           "data-1": len(raw) - 1}.get(keep, keep)
    victim.write_bytes(raw[:cut])
    _load_fails(victim, "truncated")
    _original_still_loads(model_file)


@pytest.mark.parametrize("content", [
    b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 3,
    b"model weights: 1 2 3\n" * 10,
    b"PK\x03\x04" + bytes(200),  # a zip (e.g. an .npz)
    b"\x80\x04\x95" + bytes(100),  # a pickle: never unpickled
])
def test_not_a_model_file(victim, content):
    victim.write_bytes(content)
    _load_fails(victim, "not an imgcls model file")


def test_safetensors_without_imgcls_metadata(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"W": np.zeros((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    _load_fails(path, "without imgcls metadata")


def test_header_not_json(victim):
    header, body = read_parts(victim)
    text = json.dumps(header).encode()
    broken = text[:-1] + b"!"  # same length, no longer valid JSON
    victim.write_bytes(struct.pack("<Q", len(broken)) + broken + body)
    _load_fails(victim, "corrupt header")


def test_tampered_tensor_bytes(model_file, victim):
    raw = bytearray(victim.read_bytes())
    raw[-3] ^= 0xFF  # one byte of the last tensor
    victim.write_bytes(bytes(raw))
    _load_fails(victim, r"tensor data was modified or damaged \(SHA-256 mismatch\)")
    _original_still_loads(model_file)


def test_tampered_tensor_with_consistent_file_layout(victim):
    # Replace a tensor's bytes by others of the same size: safetensors itself
    # cannot notice; the payload hash does.
    header, body = read_parts(victim)
    start, end = header["W_"]["data_offsets"]
    w = np.frombuffer(body[start:end], dtype=np.float32) * 2
    body = body[:start] + w.tobytes() + body[end:]
    write_parts(victim, header, body)
    _load_fails(victim, "SHA-256 mismatch")


def test_tampered_metadata_without_rehash(victim):
    edit_metadata(victim, lambda doc: doc["params"].update(shrink=0.5), rehash=False)
    _load_fails(victim, r"metadata was modified or damaged \(SHA-256 mismatch\)")


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval",
                                  "imgcls.io.modelfile.save", "Centroid2", "", None, 3])
def test_unknown_estimator_class(victim, name):
    def change(doc):
        doc["estimator"] = name
    edit_metadata(victim, change)
    _load_fails(victim, "unknown estimator class .*may only hold one of: Centroid, "
                        "ColorHistogram, HOG, KMeansFeatures, KNearestNeighbor, LinearSVM, "
                        "NearestNeighbor, OnnxEmbedder, Pixels, Softmax")


@pytest.mark.parametrize("params, message", [
    ({"shrink": 2.0, "metric": "l2", "tags": {"$tuple": ["a", 1]}}, "'shrink' parameter"),
    ({"shrink": 0.1, "metric": "cosine", "tags": None}, "'metric' parameter"),
    ({"shrink": 0.1, "metric": "l2", "tags": None, "evil": 1}, "unexpected keyword argument 'evil'"),
    ({"shrink": 0.1}, r"missing \['metric', 'tags'\]"),
    ({"shrink": {"$eval": "1"}, "metric": "l2", "tags": None}, "unknown or malformed tag '\\$eval'"),
    (["shrink", 0.1], "params is not a dict"),
])
def test_params_the_estimator_rejects(victim, params, message):
    def change(doc):
        doc["params"] = params
    edit_metadata(victim, change)
    _load_fails(victim, message)


def test_future_format_version(victim):
    def change(doc):
        doc["format_version"] = 2
        doc["imgcls_version"] = "9.0.0"
        doc["new_field"] = "something only imgcls 9 knows"
    edit_metadata(victim, change)
    err = _load_fails(victim, "format version 2 by imgcls 9.0.0.*needs a newer imgcls")
    assert "reads format version 1" in str(err)
    # the version is checked before the hash: a newer format may hash differently
    edit_metadata(victim, lambda doc: doc.update(format_version=3), rehash=False)
    _load_fails(victim, "needs a newer imgcls")


@pytest.mark.parametrize("version", [0, -1, "1", 1.5, None, True])
def test_bad_format_version(victim, version):
    edit_metadata(victim, lambda doc: doc.update(format_version=version))
    _load_fails(victim, "bad format version")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something-else"), "unknown format name"),
    (lambda d: d["attributes"].pop("W_"), r"tensors .* do not match the metadata"),
    (lambda d: d["attributes"].update(evil_={"json": {"$eval": "x"}}), "unknown or malformed tag"),
    (lambda d: d["attributes"].update(__class__={"json": 1}), "not a learned attribute name"),
    (lambda d: d["attributes"].update(x_={"pickle": "..."}), "corrupt metadata for attribute 'x_'"),
    (lambda d: d["attributes"]["W_"]["tensor"].update(dtype="float64"), "does not have the dtype/shape"),
    (lambda d: d["attributes"]["W_"]["tensor"].update(shape=[16, 3]), "does not have the dtype/shape"),
    (lambda d: d.update(class_names=["only one"]), "class_names does not match classes_"),
    (lambda d: d.pop("attributes"), "no attribute table"),
])
def test_inconsistent_metadata(victim, change, message):
    edit_metadata(victim, change)
    _load_fails(victim, message)


def test_metadata_not_json(victim):
    header, body = read_parts(victim)
    header["__metadata__"]["imgcls"] = "{not json"
    write_parts(victim, header, body)
    _load_fails(victim, "corrupt imgcls metadata")


def test_read_metadata_checks_the_same_way(victim):
    edit_metadata(victim, lambda doc: doc.update(format_version=7))
    with pytest.raises(ModelFileError, match="needs a newer imgcls"):
        read_metadata(victim)


def test_builtin_estimator_that_cannot_be_imported(victim, monkeypatch):
    from imgcls.io import registry

    monkeypatch.setitem(registry.BUILTIN_ESTIMATORS, "Softmax", ("imgcls.linear", "NoSuchClass"))
    edit_metadata(victim, lambda doc: doc.update(estimator="Softmax"))
    _load_fails(victim, "holds a Softmax, which cannot be imported in this installation")
