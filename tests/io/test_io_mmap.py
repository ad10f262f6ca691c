"""Large models: memory-mapped loading, streamed payload hashes and blocked saving."""

from __future__ import annotations

import numpy as np
import pytest

from imgcls.datasets.features import ShardedArray
from imgcls.errors import ModelFileError
from imgcls.io import load, save
from imgcls.io import modelfile
from imgcls.io.codec import tensor_sha256
from imgcls.io.tensorfile import read_header, stream_sha256, tensor_blocks
from imgcls.neighbors import KNearestNeighbor
from peak_memory import traced_peak

KEY = b"0123456789abcdef-mmap"


def knn(n=300, d=16, dtype=np.float32, seed=0, k=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, 4, n)
    return KNearestNeighbor(k=k, metric="l2").fit(X, y), X, y


def test_mmap_true_maps_every_tensor_and_predicts_the_same(tmp_path):
    model, X, _ = knn()
    path = save(model, tmp_path / "m.safetensors", classes=["a", "b", "c", "d"])
    loaded = load(path, mmap=True)
    for name in ("X_fit_", "y_fit_", "classes_"):
        arr = getattr(loaded, name)
        assert isinstance(arr, np.memmap) and not arr.flags.writeable, name
        assert np.array_equal(arr, getattr(model, name)) and arr.dtype == getattr(model, name).dtype
    assert loaded.class_names_ == ["a", "b", "c", "d"]
    Q = X[:20] + 0.01
    assert np.array_equal(loaded.predict(Q), model.predict(Q))


def test_mmap_false_and_the_default_threshold(tmp_path, monkeypatch):
    model, _, _ = knn()
    path = save(model, tmp_path / "m.safetensors")
    assert not isinstance(load(path, mmap=False).X_fit_, np.memmap)
    assert not isinstance(load(path).X_fit_, np.memmap)  # far below MMAP_MIN_BYTES
    monkeypatch.setattr(modelfile, "MMAP_MIN_BYTES", model.X_fit_.nbytes)
    loaded = load(path)
    assert isinstance(loaded.X_fit_, np.memmap)
    assert not isinstance(loaded.y_fit_, np.memmap)  # 2400 bytes: read
    with pytest.raises(ValueError, match="mmap"):
        load(path, mmap="yes")


def test_loading_a_large_model_holds_little_memory(tmp_path):
    model, _, _ = knn(n=40_000, d=256)  # X_fit_: 41 MB
    path = save(model, tmp_path / "big.safetensors")
    load(path, mmap=True)  # warm imports and caches
    with traced_peak() as mapped:
        loaded = load(path, mmap=True)
    with traced_peak() as read:
        load(path, mmap=False)
    assert isinstance(loaded.X_fit_, np.memmap)
    assert read.bytes > model.X_fit_.nbytes  # the measurement sees a full read...
    assert mapped.bytes < 8 * 2**20, mapped.bytes  # ...and the mapped load holds blocks


def test_saving_a_memory_mapped_model_holds_little_memory_and_the_same_bytes(tmp_path):
    model, _, _ = knn(n=40_000, d=256)
    first = save(model, tmp_path / "a.safetensors")
    loaded = load(first, mmap=True)
    save(loaded, tmp_path / "warm.safetensors")
    with traced_peak() as peak:
        second = save(loaded, tmp_path / "b.safetensors")
    assert peak.bytes < 8 * 2**20, peak.bytes
    assert second.read_bytes() == first.read_bytes()


def test_overwriting_the_mapped_file_keeps_the_loaded_model(tmp_path):
    model, X, _ = knn()
    path = save(model, tmp_path / "m.safetensors")
    loaded = load(path, mmap=True)
    other, _, _ = knn(seed=5)
    save(other, path)  # atomic replace: the mapping still sees the old file
    assert np.array_equal(loaded.X_fit_, model.X_fit_)
    save(loaded, path)
    assert np.array_equal(load(path, mmap=True).X_fit_, X)


def test_a_sharded_training_set_is_saved_as_one_tensor(tmp_path):
    model, X, _ = knn(n=1000)
    plain = save(model, tmp_path / "plain.safetensors")
    np.save(tmp_path / "s0.npy", X[:300])
    np.save(tmp_path / "s1.npy", X[300:])
    shards = [np.load(tmp_path / "s0.npy", mmap_mode="r"), np.load(tmp_path / "s1.npy",
                                                                    mmap_mode="r")]
    model.X_fit_ = ShardedArray(shards)
    sharded = save(model, tmp_path / "sharded.safetensors")
    assert sharded.read_bytes() == plain.read_bytes()
    assert np.array_equal(load(sharded, mmap=True).X_fit_, X)


def test_damaged_payload_is_detected_when_mapped(tmp_path):
    model, _, _ = knn()
    path = save(model, tmp_path / "m.safetensors")
    with open(path, "rb") as f:
        _, entries, data_start = read_header(path, f)
    x_fit = next(t for t in entries if t.name == "X_fit_")
    raw = bytearray(path.read_bytes())
    raw[data_start + (x_fit.start + x_fit.end) // 2] ^= 0x01  # one bit of the mapped X_fit_
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"tensor data was modified or damaged"):
        load(path, mmap=True)
    path.write_bytes(bytes(raw[:-7]))
    with pytest.raises(ModelFileError, match="truncated"):
        load(path, mmap=True)


def test_signatures_hold_when_mapped(tmp_path):
    model, _, _ = knn()
    path = save(model, tmp_path / "m.safetensors", key=KEY)
    assert isinstance(load(path, key=KEY, mmap=True).X_fit_, np.memmap)
    with pytest.raises(ModelFileError, match="signature"):
        load(path, key=b"another key of 16+ bytes", mmap=True)
    unsigned = save(model, tmp_path / "u.safetensors")
    with pytest.raises(ModelFileError, match="unsigned|not signed"):
        load(unsigned, key=KEY, mmap=True)


def test_nan_in_a_mapped_training_set_is_refused_naming_the_row(tmp_path):
    model, _, _ = knn()
    X = model.X_fit_.copy()
    X[123, 4] = np.nan
    model.X_fit_ = X
    path = save(model, tmp_path / "m.safetensors")  # hashes match: only the schema can tell
    with pytest.raises(ModelFileError, match=r"X_fit_: holds NaN or infinite values \(first "
                                             r"in row 123\)"):
        load(path, mmap=True)


def test_file_is_standard_safetensors(tmp_path):
    from safetensors.numpy import load_file

    model, _, _ = knn()
    path = save(model, tmp_path / "m.safetensors")
    tensors = load_file(str(path))
    assert set(tensors) == {"X_fit_", "y_fit_", "classes_"}
    assert np.array_equal(tensors["X_fit_"], model.X_fit_)
    with open(path, "rb") as f:
        _, _, data_start = read_header(path, f)
    assert data_start % 8 == 0


# ------------------------------------------------ the streamed hash equals the oracle

def _cases():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((37, 5))
    return {
        "f32": base.astype(np.float32),
        "f16": base.astype(np.float16),
        "big_endian": base.astype(">f8"),
        "fortran": np.asfortranarray(base),
        "strided": base[::3, 1:4],
        "scalar": np.array(2.5),
        "empty": np.zeros((0, 4), np.int32),
        "bool": base > 0,
        "u8_3d": (np.abs(base) * 40).astype(np.uint8).reshape(37, 5, 1),
    }


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 22])
def test_stream_sha256_equals_tensor_sha256(block, monkeypatch):
    import imgcls.io.tensorfile as tf

    cases = _cases()
    monkeypatch.setattr(tf, "BLOCK_BYTES", block)
    expected = tensor_sha256({k: np.asarray(v) for k, v in cases.items()})
    assert stream_sha256(cases) == expected
    for name, value in cases.items():
        assert stream_sha256({name: value}) == tensor_sha256({name: value}), name
        joined = b"".join(bytes(b) for b in tensor_blocks(value, block))
        assert joined == np.ascontiguousarray(value, value.dtype.newbyteorder("<")).tobytes()
    sharded = ShardedArray([cases["f32"][:10], cases["f32"][10:10], cases["f32"][10:]])
    assert stream_sha256({"X": sharded}) == tensor_sha256({"X": cases["f32"]})


def test_every_dtype_round_trips_mapped_and_read(tmp_path):
    """What the file holds comes back bit for bit, mapped or read, hash checked both ways."""
    from io_helpers import REGISTRY, Centroid, data

    X, y = data()
    model = Centroid().fit(X, y)
    model.W_ = model.W_.astype(np.float16)
    path = save(model, tmp_path / "c.safetensors", registry=REGISTRY)
    for mmap in (True, False, None):
        back = load(path, registry=REGISTRY, mmap=mmap)
        for name in ("W_", "mean_", "counts_", "classes_"):
            a, b = getattr(back, name), getattr(model, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), (name, mmap)
