import io
import os

import numpy as np
import pytest

from datasets_helpers import npy_bytes, npz_bytes, snapshot
from peak_memory import traced_peak
from imgcls.datasets import load_dataset
from imgcls.errors import ConfigError, DatasetError, FormatError


def test_npz_with_given_split_and_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "emb.npz"
    np.savez(path, X_train=rng.normal(size=(6, 4)).astype(np.float32),
             y_train=np.array(["dog", "cat", "dog", "bird", "cat", "dog"]),
             X_test=rng.normal(size=(3, 4)).astype(np.float32),
             y_test=np.array(["cat", "bird", "dog"]))
    ds = load_dataset(f"npz:{path}")
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.y_train.tolist() == [2, 1, 2, 0, 1, 2] and ds.y_test.tolist() == [1, 0, 2]
    assert ds.X_train.dtype == np.float32 and ds.X_train.shape == (6, 4)
    s = ds.summary()
    assert s["image_shape"] is None and s["n_features"] == 4 and s["dtype"] == "float32"


def test_npz_with_x_y_is_split_stratified_and_seeded(tmp_path):
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.repeat([5, 7], 10)
    np.savez(tmp_path / "a.npz", X=X, y=y)
    ds = load_dataset(f"npz:{tmp_path / 'a.npz'}", test_size=0.2, seed=4)
    assert ds.classes == ["5", "7"] and np.bincount(ds.y_test).tolist() == [2, 2]
    assert ds.X_train.dtype == np.float64
    np.testing.assert_array_equal(ds.X_train[:, 0] >= 20, ds.y_train == 1)
    again = load_dataset(f"npz:{tmp_path / 'a.npz'}", test_size=0.2, seed=4)
    np.testing.assert_array_equal(ds.X_test, again.X_test)


def test_npy_folder_with_classes_and_uint8_images(tmp_path):
    np.save(tmp_path / "X_train.npy", np.zeros((4, 5, 5), np.uint8))
    np.save(tmp_path / "y_train.npy", np.array([0, 1, 2, 1]))
    np.save(tmp_path / "X_test.npy", np.ones((2, 5, 5), np.uint8))
    np.save(tmp_path / "y_test.npy", np.array([2, 0]))
    np.save(tmp_path / "classes.npy", np.array(["zero", "one", "two"]))
    ds = load_dataset(f"npz:{tmp_path}")
    assert ds.X_train.shape == (4, 5, 5, 1) and ds.classes == ["zero", "one", "two"]
    assert ds.y_test.tolist() == [2, 0]


def test_float16_and_int_features_are_widened(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((10, 3), np.float16), y=np.arange(10) % 2)
    assert load_dataset(f"npz:{tmp_path / 'a.npz'}").X_train.dtype == np.float32
    np.savez(tmp_path / "b.npz", X=np.ones((10, 3), np.int32), y=np.arange(10) % 2)
    assert load_dataset(f"npz:{tmp_path / 'b.npz'}").X_train.dtype == np.float64


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    before = snapshot(tmp_path)
    with pytest.raises(FormatError, match=f"{path}.*without pickle"):
        load_dataset(f"npz:{path}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("arrays, msg", [
    ({"X": np.ones((4, 2)), "y": np.array([0, 1, 0])}, "4 samples but .*3 labels"),
    ({"X": np.ones((4, 2)), "y": np.array([0.5, 1, 0, 1])}, "integers or strings"),
    ({"X": np.array([[np.nan, 1.0]] * 4), "y": np.array([0, 1, 0, 1])}, "NaN"),
    ({"X": np.ones(4), "y": np.array([0, 1, 0, 1])}, "shape \\(n, d\\)"),
    ({"features": np.ones((4, 2))}, "expected arrays X_train.*found \\['features'\\]"),
    ({"X_train": np.ones((2, 3)), "y_train": np.array([0, 1]), "X_test": np.ones((2, 4)),
      "y_test": np.array([0, 1])}, "X_train samples have shape \\(3,\\) but X_test"),
    ({"X_train": np.ones((2, 3)), "y_train": np.array([0, 1]), "X_test": np.ones((2, 3)),
      "y_test": np.array([0, 5]), "classes": np.array(["a", "b"])}, "0..1"),
    ({"X": np.ones((4, 2)), "y": np.array(["a", "b", "a", "c"]),
      "classes": np.array(["a", "b"])}, "\\['c'\\] are not in classes"),
])
def test_bad_arrays_name_the_file(tmp_path, arrays, msg):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=msg):
        load_dataset(f"npz:{path}")


def test_not_an_npz_file(tmp_path):
    path = tmp_path / "page.npz"
    path.write_bytes(b"<!DOCTYPE html><html></html>")
    with pytest.raises(FormatError, match=f"{path}.*not a readable .npz"):
        load_dataset(f"npz:{path}")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'missing.npz'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="no X_train.npy"):
        load_dataset(f"npz:{empty}")


def test_single_npy_file_is_explained(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    with pytest.raises(FormatError, match="single .npy array"):
        load_dataset(f"npz:{tmp_path / 'X.npy'}")


# --- crafted files: every claim is checked against the bytes present ---

def _valid_y(n=4):
    y = np.arange(n, dtype="<i8") % 2
    return npy_bytes("<i8", y.shape, y.tobytes())


def test_huge_claimed_shape_is_a_format_error_not_memory_error(tmp_path):
    # 2**40 float64 values claimed, 16 bytes present: numpy raised MemoryError.
    path = tmp_path / "huge.npz"
    path.write_bytes(npz_bytes({"X.npy": npy_bytes("<f8", (2 ** 40, 1), b"\0" * 16),
                                "y.npy": _valid_y()}))
    with pytest.raises(FormatError, match=rf"{path}\[X\].*\(1099511627776, 1\).*16 bytes"):
        load_dataset(f"npz:{path}")


def test_claimed_shape_allocates_nothing_before_the_bytes_are_checked(tmp_path):
    # 64 MiB claimed by a file of a few hundred bytes: numpy allocated it, then
    # found the data short.  Now the claim is refused before any allocation.
    path = tmp_path / "claim.npz"
    path.write_bytes(npz_bytes({"X.npy": npy_bytes("<f8", (2 ** 20, 8), b"\0" * 64),
                                "y.npy": _valid_y()}))
    with traced_peak() as traced:
        with pytest.raises(FormatError, match=rf"{path}\[X\]"):
            load_dataset(f"npz:{path}")
    peak = traced.bytes
    assert peak < 4 * 2 ** 20


def test_claimed_shape_in_a_npy_folder_is_checked_too(tmp_path):
    (tmp_path / "X.npy").write_bytes(npy_bytes("<f4", (2 ** 40,), b"\0" * 8))
    (tmp_path / "y.npy").write_bytes(_valid_y(2))
    with pytest.raises(FormatError, match=rf"{tmp_path / 'X.npy'}.*4398046511104 bytes"):
        load_dataset(f"npz:{tmp_path}")


def test_deflate_bomb_is_refused_before_decompressing(tmp_path):
    # 16 MiB of zeros deflate to ~16 KB (about 1000:1); the reader refuses the
    # ratio from the zip directory alone.
    X = np.zeros((2 ** 21, 1), np.float64)
    path = tmp_path / "bomb.npz"
    path.write_bytes(npz_bytes({"X.npy": npy_bytes("<f8", X.shape, X.tobytes()),
                                "y.npy": npy_bytes("<i8", (2 ** 21,), bytes(2 ** 24))},
                               deflate=True))
    assert path.stat().st_size < 2 ** 16
    with traced_peak() as traced:
        with pytest.raises(FormatError, match=rf"{path}\[X\].*compress.*100:1"):
            load_dataset(f"npz:{path}")
    peak = traced.bytes
    assert peak < 4 * 2 ** 20


def test_inflate_ratio_limit_can_be_raised_for_trusted_files(tmp_path):
    X = np.zeros((2 ** 15, 8), np.float64)
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, X=X, y=np.arange(2 ** 15) % 2)
    with pytest.raises(FormatError, match="max_inflate_ratio"):
        load_dataset(f"npz:{path}")
    ds = load_dataset(f"npz:{path}", max_inflate_ratio=2000)
    assert ds.X_train.shape[1] == 8
    with pytest.raises(ConfigError, match="max_inflate_ratio"):
        load_dataset(f"npz:{path}", max_inflate_ratio=0)


def test_compressed_npz_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    y = np.repeat(np.array(["a", "b"]), 20)
    np.savez_compressed(tmp_path / "c.npz", X=X, y=y)
    ds = load_dataset(f"npz:{tmp_path / 'c.npz'}", test_size=0.25, seed=0)
    got = np.concatenate([ds.X_train, ds.X_test])
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(X, axis=0))
    assert ds.classes == ["a", "b"]


def test_fortran_order_and_big_endian_arrays_read_like_numpy(tmp_path):
    X = np.asfortranarray(np.arange(24, dtype=">f4").reshape(6, 4))
    np.savez(tmp_path / "f.npz", X_train=X, y_train=np.arange(6) % 3, X_test=X[:3],
             y_test=np.arange(3))
    from imgcls.datasets.arrays import read_arrays

    arrays, where = read_arrays(tmp_path / "f.npz")
    np.testing.assert_array_equal(arrays["X_train"], X)
    assert arrays["X_train"].dtype == np.dtype(">f4")
    assert where["X_train"] == f"{tmp_path / 'f.npz'}[X_train]"


@pytest.mark.parametrize("member, msg", [
    (npy_bytes("|O", (2,), b"\0" * 16), "without pickle"),
    (npy_bytes("<c16", (2, 1), b"\0" * 32), "dtype complex128"),
    (npy_bytes([("a", "<i4")], (2,), b"\0" * 8), "structured"),
    (npy_bytes("<M8[s]", (2, 1), b"\0" * 16), "dtype datetime64"),
    (npy_bytes("<U0", (2 ** 62,)), "zero-size items"),
    (npy_bytes("<f8", (-1, 2), b""), "negative"),
    (npy_bytes("<f8", (2 ** 40, 2 ** 40, 0)), "too large"),
    (npy_bytes("<f8", (1,) * 40, b"\0" * 8), "40 dimensions"),
    (npy_bytes("<f8", (2, 1), b"\0" * 24), "24 bytes"),
    (npy_bytes("<f8", (2, 1), b"\0" * 16, version=(3, 0)), "version 3.0"),
    (npy_bytes("<f8", (2, 1), header="{'descr': '<f8', 'shape': (2, 1)}"), "bad .npy header.*keys"),
    (npy_bytes("<f8", (2, 1), header="(" * 5000), "header"),
    (b"\x93NUMPY\x01\x00\xff", "header"),
    (b"PK-not-npy", "not a .npy array"),
])
def test_crafted_members_name_file_member_and_cause(tmp_path, member, msg):
    path = tmp_path / "x.npz"
    path.write_bytes(npz_bytes({"X.npy": member, "y.npy": _valid_y(2)}))
    with pytest.raises(FormatError, match=rf"{path}\[X\].*{msg}"):
        load_dataset(f"npz:{path}")


def test_invalid_unicode_labels_are_a_format_error(tmp_path):
    codes = np.array([0x41, 0xFFFFFFFF, 0x42, 0x41], dtype="<u4")
    path = tmp_path / "u.npz"
    path.write_bytes(npz_bytes({"X.npy": npy_bytes("<f8", (4, 1), bytes(32)),
                                "y.npy": npy_bytes("<U1", (4,), codes.tobytes())}))
    with pytest.raises(FormatError, match=rf"{path}\[y\].*not valid Unicode"):
        load_dataset(f"npz:{path}")


def test_non_ascii_byte_string_labels_are_a_format_error(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, X=np.zeros((4, 1)), y=np.array([b"a", b"\xff", b"a", b"\xff"]))
    with pytest.raises(FormatError, match=rf"{path}\[y\].*ASCII"):
        load_dataset(f"npz:{path}")


def test_byte_string_labels_and_classes_are_decoded(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, X=np.zeros((4, 1)), y=np.array([b"cat", b"dog", b"cat", b"dog"]),
             classes=np.array([b"dog", b"cat"]))
    ds = load_dataset(f"npz:{path}", test_size=0.5)
    assert ds.classes == ["dog", "cat"]


@pytest.mark.parametrize("change, msg", [
    (lambda zi: setattr(zi, "compress_type", 12), "compression method 12"),
    (lambda zi: setattr(zi, "flag_bits", zi.flag_bits | 1), "encrypted"),
])
def test_unsupported_zip_members_are_refused(tmp_path, change, msg):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", npy_bytes("<f8", (2, 1), bytes(16)))
        zf.writestr("y.npy", _valid_y(2))
        for zi in zf.infolist():
            if zi.filename == "X.npy":
                change(zi)
    path = tmp_path / "z.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match=rf"{path}\[X\].*{msg}"):
        load_dataset(f"npz:{path}")


def test_truncated_archive_names_the_file(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, X=np.ones((50, 4)), y=np.arange(50) % 2)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(FormatError, match=str(path)):
            load_dataset(f"npz:{path}")


def test_duplicate_array_names_are_ambiguous(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(npz_bytes({"X.npy": npy_bytes("<f8", (2, 1), bytes(16)),
                                "X": npy_bytes("<f8", (2, 1), bytes(16)), "y.npy": _valid_y(2)}))
    with pytest.raises(FormatError, match="holds X twice"):
        load_dataset(f"npz:{path}")


@pytest.mark.timeout(30)
def test_fifos_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=f"{fifo}.*FIFO"):
        load_dataset(f"npz:{fifo}")
    folder = tmp_path / "arrays"
    folder.mkdir()
    os.mkfifo(folder / "X.npy")
    (folder / "y.npy").write_bytes(_valid_y(2))
    with pytest.raises(DatasetError, match=f"{folder / 'X.npy'}.*FIFO"):
        load_dataset(f"npz:{folder}")


@pytest.mark.parametrize("name", ["npz:/nonexistent/dir/x.npz", "npz:/tmp/a\0b.npz",
                                  "npz:/" + "a" * 5000])
def test_unusable_paths_are_a_dataset_error(name):
    with pytest.raises(DatasetError, match="no such file|cannot read"):
        load_dataset(name)
