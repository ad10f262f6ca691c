"""Optional HMAC-SHA256 signatures: what the embedded SHA-256s cannot catch, a key can."""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import REGISTRY, edit_metadata, read_parts, write_parts

from imgcls.errors import ModelFileError
from imgcls.io import load, read_metadata, save
from imgcls.io.codec import tensor_sha256

KEY = bytes(range(32))


@pytest.fixture
def signed(tmp_path, fitted):
    model, _ = fitted
    return save(model, tmp_path / "signed.safetensors", registry=REGISTRY, key=KEY)


def test_signed_round_trip(signed, fitted):
    model, X = fitted
    loaded = load(signed, registry=REGISTRY, key=KEY)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    # without a key a signed file still loads: integrity only
    assert load(signed, registry=REGISTRY).shrink == 0.25
    assert read_metadata(signed)["estimator"] == "Centroid"


def test_str_key_is_utf8(tmp_path, fitted):
    model, _ = fitted
    phrase = "ключ-для-моделей-2026"  # 21 characters, 38 bytes in UTF-8
    path = save(model, tmp_path / "m.st", registry=REGISTRY, key=phrase)
    assert load(path, registry=REGISTRY, key=phrase.encode("utf-8")).shrink == 0.25


def test_unsigned_file_refused_when_a_key_is_given(model_file):
    with pytest.raises(ModelFileError, match="not signed") as info:
        load(model_file, registry=REGISTRY, key=KEY)
    assert str(model_file) in str(info.value)


def test_wrong_key(signed):
    with pytest.raises(ModelFileError, match="signature does not match"):
        load(signed, registry=REGISTRY, key=b"x" * 32)


def test_edit_with_recomputed_hashes_is_caught_only_by_the_key(signed):
    # What an attacker without the key can do: change a parameter and the
    # learned weights, then recompute both SHA-256s.  Integrity checks pass.
    header, body = read_parts(signed)
    start, end = header["W_"]["data_offsets"]
    w = np.frombuffer(body[start:end], dtype=np.float32) + 1
    body = body[:start] + w.tobytes() + body[end:]
    write_parts(signed, header, body)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        s, e = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[s:e], dtype={"F32": np.float32, "F64": np.float64,
                                                        "I64": np.int64, "I32": np.int32}
                                      [entry["dtype"]]).reshape(entry["shape"])
    edit_metadata(signed, lambda d: (d["params"].update(shrink=0.5),
                                     d.update(payload_sha256=tensor_sha256(tensors))))
    forged = load(signed, registry=REGISTRY)  # the SHA-256s do not stop this
    assert forged.shrink == 0.5
    with pytest.raises(ModelFileError, match="signature does not match"):
        load(signed, registry=REGISTRY, key=KEY)


def test_signature_moved_to_another_file(tmp_path, fitted, signed):
    from io_helpers import Centroid, data

    other = save(Centroid(shrink=1.0).fit(*data(seed=4)), tmp_path / "o.st", registry=REGISTRY)
    header, body = read_parts(other)
    header["__metadata__"]["imgcls_signature"] = read_parts(signed)[0]["__metadata__"][
        "imgcls_signature"]
    write_parts(other, header, body)
    with pytest.raises(ModelFileError, match="signature does not match"):
        load(other, registry=REGISTRY, key=KEY)


@pytest.mark.parametrize("value", ["", "hmac-sha256:zz", "hmac-sha256:" + "0" * 63,
                                   "md5:" + "0" * 64, 5])
def test_malformed_signature(signed, value):
    header, body = read_parts(signed)
    header["__metadata__"]["imgcls_signature"] = value
    write_parts(signed, header, body)
    with pytest.raises(ModelFileError, match="signature"):
        load(signed, registry=REGISTRY, key=KEY)


@pytest.mark.parametrize("key, message", [
    (b"short", "at least 16 bytes"), ("", "at least 16 bytes"),
    (12345678901234567890, "bytes or str"),
    (None, None),
])
def test_key_argument(tmp_path, fitted, key, message):
    model, _ = fitted
    if message is None:
        save(model, tmp_path / "m.st", registry=REGISTRY, key=key)
        return
    with pytest.raises(ValueError, match=f"key: .*{message}"):
        save(model, tmp_path / "m.st", registry=REGISTRY, key=key)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=f"key: .*{message}"):
        load(tmp_path / "m.st", registry=REGISTRY, key=key)
