"""features:DIR: memory-mapped feature sets, shards as one array, and every bad input typed."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets_helpers import npy_bytes, snapshot
from imgcls._validation import first_nonfinite_row
from imgcls.datasets import Dataset, load_dataset
from imgcls.datasets.features import MAX_UNNAMED_CLASSES, ShardedArray, map_npy
from imgcls.errors import ConfigError, DatasetError, FormatError
from peak_memory import traced_peak


def write_set(folder: Path, X_train, y_train, X_test=None, y_test=None, *, shards=None,
              y_shards=False, classes=None) -> Path:
    """A features:DIR folder; ``shards`` = row counts of X_train shards."""
    folder.mkdir(parents=True, exist_ok=True)
    X_test = X_train[:3] if X_test is None else X_test
    y_test = y_train[:3] if y_test is None else y_test
    if shards is None:
        np.save(folder / "X_train.npy", X_train)
        np.save(folder / "y_train.npy", y_train)
    else:
        starts = np.cumsum([0] + list(shards))
        for i, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
            np.save(folder / f"X_train-{i:05d}.npy", X_train[a:b])
            if y_shards:
                np.save(folder / f"y_train-{i:05d}.npy", y_train[a:b])
        if not y_shards:
            np.save(folder / "y_train.npy", y_train)
    np.save(folder / "X_test.npy", X_test)
    np.save(folder / "y_test.npy", y_test)
    if classes is not None:
        (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes), "utf-8")
    return folder


def data(n=40, d=6, dtype=np.float32, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * 10
    X = X.astype(dtype) if np.dtype(dtype).kind == "f" else (np.abs(X) * 10).astype(dtype)
    return X, (np.arange(n) % n_classes).astype(np.int64)


# ------------------------------------------------------------------ the layout

@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.float64])
def test_one_file_is_the_memmap_itself_not_a_copy(tmp_path, dtype):
    X, y = data(dtype=dtype)
    folder = write_set(tmp_path / "set", X, y, classes=["a", "b", "c", "d"])
    ds = load_dataset(f"features:{folder}")
    assert isinstance(ds, Dataset) and ds.name == f"features:{folder}"
    for A, ref in ((ds.X_train, X), (ds.X_test, X[:3])):
        assert isinstance(A, np.memmap) and A.dtype == dtype and not A.flags.writeable
        assert np.array_equal(np.asarray(A), ref)
    assert Path(ds.X_train.filename) == folder / "X_train.npy"
    assert ds.y_train.dtype == np.int64 and np.array_equal(ds.y_train, y)
    assert ds.classes == ["a", "b", "c", "d"]
    assert ds.summary()["n_features"] == 6


def test_loading_allocates_nothing_like_the_data(tmp_path):
    X, y = data(n=40_000, d=100, dtype=np.float32)  # 16 MB of features
    folder = write_set(tmp_path / "set", X, y)
    load_dataset(f"features:{folder}")  # warm imports
    with traced_peak() as peak:
        ds = load_dataset(f"features:{folder}")
    # labels as int64 (0.3 MB each split) and the finite scan's 4 MiB integer buffer
    assert peak.bytes < 6 * 2**20 < X.nbytes / 2, peak.bytes
    assert isinstance(ds.X_train, np.memmap)


def test_classes_default_to_the_label_values(tmp_path):
    X, y = data()
    y = y * 2  # labels 0, 2, 4, 6: classes "0".."6", some empty
    ds = load_dataset(f"features:{write_set(tmp_path / 's', X, y)}")
    assert ds.classes == [str(i) for i in range(7)]
    assert ds.summary()["counts"]["train"][1] == 0


@pytest.mark.parametrize("y_shards", [False, True])
def test_shards_read_as_one_array(tmp_path, y_shards):
    X, y = data(n=50, dtype=np.float16)
    folder = write_set(tmp_path / "s", X, y, shards=[20, 0, 25, 5], y_shards=y_shards)
    ds = load_dataset(f"features:{folder}")
    A = ds.X_train
    assert isinstance(A, ShardedArray) and A.shape == (50, 6) and A.dtype == np.float16
    assert len(A) == 50 and A.ndim == 2 and A.nbytes == X.nbytes
    assert all(isinstance(s, np.memmap) or s.size == 0 for s in A.shards)
    assert np.array_equal(ds.y_train, y)
    assert np.array_equal(np.asarray(A), X)
    # the access the search makes: row slices and gathers, checked against the plain array
    for s, e in [(0, 50), (3, 17), (18, 22), (19, 46), (45, 50), (7, 7), (-10, None),
                 (0, 100)]:
        assert np.array_equal(A[s:e], X[s:e])
    within = A[21:40]
    assert np.shares_memory(within, A.shards[2])  # inside one shard: a view
    assert np.array_equal(A[::3], X[::3])
    idx = np.array([[49, 0], [20, 19], [-1, 45]])
    assert np.array_equal(A[idx], X[idx])
    assert np.array_equal(A[[3, 3, 47]], X[[3, 3, 47]])
    mask = np.arange(50) % 7 == 0
    assert np.array_equal(A[mask], X[mask])
    assert np.array_equal(A[21], X[21]) and np.array_equal(A[-1], X[-1])
    assert np.array_equal(A[10:30, 2:4], X[10:30, 2:4]) and A[22, 1] == X[22, 1]
    blocks = list(A.iter_blocks(8))
    assert [s for s, _ in blocks] == [0, 8, 16, 20, 28, 36, 44, 45]
    assert np.array_equal(np.concatenate([b for _, b in blocks]), X)
    for start, block in blocks:
        assert any(np.shares_memory(block, s) for s in A.shards)
    with pytest.raises(IndexError):
        A[50]
    with pytest.raises(IndexError):
        A[np.array([0, 50])]


def test_sharded_array_refuses_mismatched_shards():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="b: 4 values per row, but a has 3"):
        ShardedArray([a, np.zeros((2, 4), np.float32)], ["a", "b"])
    with pytest.raises(ValueError, match="dtype float16"):
        ShardedArray([a, np.zeros((2, 3), np.float16)])
    with pytest.raises(ValueError):
        ShardedArray([])


def test_finite_check_can_be_skipped_and_is_validated(tmp_path):
    X, y = data()
    X[5, 1] = np.nan
    folder = write_set(tmp_path / "s", X, y)
    ds = load_dataset(f"features:{folder}", check_finite=False)
    assert "not checked" in ds.source
    with pytest.raises(ConfigError, match="check_finite"):
        load_dataset(f"features:{folder}", check_finite="no")
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset(f"features:{folder}", mmap=True)


# ------------------------------------------------------------------ bad input

def _raises(folder: Path, match: str, names: Path | str | None = None) -> FormatError:
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(f"features:{folder}")
    message = str(info.value)
    assert "\n" not in message
    assert str(names if names is not None else folder) in message, message
    return info.value


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_name_the_file_and_row(tmp_path, bad):
    X, y = data()
    X[17, 3] = bad
    folder = write_set(tmp_path / "s", X, y)
    _raises(folder, "row 17 holds NaN or infinite", folder / "X_train.npy")


def test_float16_overflow_is_refused(tmp_path):
    X, y = data(dtype=np.float32)
    X[9, 0] = 1e6  # beyond float16's 65504: stored as inf
    with np.errstate(over="ignore"):
        X16 = X.astype(np.float16)
    folder = write_set(tmp_path / "s", X16, y)
    _raises(folder, "row 9 holds NaN or infinite.*float16 overflow", folder / "X_train.npy")


def test_nan_in_a_shard_names_the_shard_and_the_global_row(tmp_path):
    X, y = data(n=30)
    X[25, 0] = np.nan
    folder = write_set(tmp_path / "s", X, y, shards=[10, 10, 10])
    _raises(folder, r"row 5 \(row 25 of X_train\)", folder / "X_train-00002.npy")


def test_nan_in_the_test_split(tmp_path):
    X, y = data()
    Xt = X[:5].copy()
    Xt[4, 4] = np.inf
    folder = write_set(tmp_path / "s", X, y, Xt, y[:5])
    _raises(folder, "row 4", folder / "X_test.npy")


def test_shards_with_different_widths_name_both(tmp_path):
    X, y = data(n=20)
    folder = write_set(tmp_path / "s", X, y, shards=[10, 10])
    np.save(folder / "X_train-00001.npy", np.zeros((10, 5), np.float32))
    err = _raises(folder, "5 features per row, but .* has 6", folder / "X_train-00001.npy")
    assert "X_train-00000.npy" in str(err)


def test_shards_with_different_dtypes_name_both(tmp_path):
    X, y = data(n=20)
    folder = write_set(tmp_path / "s", X, y, shards=[10, 10])
    np.save(folder / "X_train-00001.npy", X[10:].astype(np.float16))
    err = _raises(folder, "dtype float16, but .* has float32", folder / "X_train-00001.npy")
    assert "X_train-00000.npy" in str(err)


def test_train_and_test_widths_must_agree(tmp_path):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y, X[:3, :4], y[:3])
    _raises(folder, "4 features per row", folder / "X_test.npy")


@pytest.mark.parametrize("n_labels", [39, 41, 0])
def test_labels_whose_length_differs_from_the_rows(tmp_path, n_labels):
    X, y = data(n=40)
    folder = write_set(tmp_path / "s", X, np.zeros(n_labels, np.int64))
    err = _raises(folder, f"{n_labels} labels, but .* has 40 rows", folder / "y_train.npy")
    assert "X_train.npy" in str(err)


def test_label_shards_must_match_their_x_shards(tmp_path):
    X, y = data(n=20)
    folder = write_set(tmp_path / "s", X, y, shards=[10, 10], y_shards=True)
    np.save(folder / "y_train-00001.npy", y[:9])
    _raises(folder, "9 labels, but .*X_train-00001.npy has 10 rows", folder / "y_train-00001.npy")
    (folder / "y_train-00001.npy").unlink()
    _raises(folder, "a label shard, but X_train has 2 shards", folder / "y_train-00000.npy")
    np.save(folder / "y_train-00001.npy", y[10:])
    np.save(folder / "y_train-00002.npy", y[10:])
    _raises(folder, "3 label shards .* for 2 X_train shards")


def test_one_label_file_for_all_shards_must_cover_them(tmp_path):
    X, y = data(n=20)
    folder = write_set(tmp_path / "s", X, y[:15], shards=[10, 10])
    _raises(folder, r"15 labels, but X_train \(2 shards", folder / "y_train.npy")


@pytest.mark.parametrize("labels, match", [
    (np.full(40, -1, np.int64), "label -1 at row 0"),
    (np.arange(40, dtype=np.float64), "labels must be integers"),
    (np.zeros((40, 1), np.int64), "must be 1-D"),
    (np.full(40, 2**63 + 5, np.uint64), "too large"),
    (np.array(["a"] * 40), "labels must be integers"),
])
def test_bad_label_values(tmp_path, labels, match):
    X, _ = data(n=40)
    folder = write_set(tmp_path / "s", X, labels, X[:3], np.zeros(3, np.int64))
    _raises(folder, match, folder / "y_train.npy")


def test_labels_beyond_the_class_names(tmp_path):
    X, y = data()  # labels 0..3
    folder = write_set(tmp_path / "s", X, y, classes=["a", "b", "c"])
    _raises(folder, "label 3 at row 3, but classes.txt names 3 classes")


def test_huge_labels_without_class_names(tmp_path):
    X, y = data()
    y[7] = MAX_UNNAMED_CLASSES
    _raises(write_set(tmp_path / "s", X, y), "without a classes.txt")


@pytest.mark.parametrize("text, match", [
    ("a\n\nc\nd\n", "line 2 is empty"),
    ("a\nb\na\nd\n", "line 3 repeats"),
    ("", "no class names"),
])
def test_bad_class_name_files(tmp_path, text, match):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    (folder / "classes.txt").write_text(text)
    _raises(folder, match, folder / "classes.txt")
    (folder / "classes.txt").write_bytes(b"a\n\xff\n")
    _raises(folder, "not UTF-8", folder / "classes.txt")


def test_class_names_without_final_newline_and_crlf(tmp_path):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    (folder / "classes.txt").write_bytes("cat\r\ndog\r\nemu\r\nfox".encode())
    assert load_dataset(f"features:{folder}").classes == ["cat", "dog", "emu", "fox"]


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_npy_is_a_format_error_naming_the_file(tmp_path, cut):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    path = folder / "X_train.npy"
    path.write_bytes(path.read_bytes()[:-cut])
    _raises(folder, "bytes of data are present", path)


def test_truncated_header(tmp_path):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    (folder / "y_test.npy").write_bytes(b"\x93NUMPY\x01\x00\x76")
    _raises(folder, "y_test.npy", folder / "y_test.npy")


@pytest.mark.parametrize("descr, match", [(">f4", "byte order"), ("<c8", "not allowed|is not read"),
                                          ("<i8", "is not read"), ("|O", "object")])
def test_dtypes_that_are_not_mapped(tmp_path, descr, match):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    n = 40 * 6
    raw = np.zeros(n, np.dtype(descr) if descr != "|O" else np.int64).tobytes()
    (folder / "X_train.npy").write_bytes(npy_bytes(descr, (40, 6), raw))
    _raises(folder, "is not read|object|not allowed", folder / "X_train.npy")


def test_fortran_order_is_refused(tmp_path):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    np.save(folder / "X_train.npy", np.asfortranarray(X))
    _raises(folder, "Fortran", folder / "X_train.npy")


def test_wrong_number_of_axes(tmp_path):
    X, y = data()
    folder = write_set(tmp_path / "s", X.reshape(40, 2, 3), y)
    _raises(folder, r"shape \(n, d\)", folder / "X_train.npy")


def test_layout_errors(tmp_path):
    X, y = data(n=30)
    folder = write_set(tmp_path / "s", X, y, shards=[10, 10, 10])
    (folder / "X_train-00001.npy").unlink()
    _raises(folder, "X_train-00001.npy is missing")
    np.save(folder / "X_train-00001.npy", X[10:20])
    np.save(folder / "X_train.npy", X)
    _raises(folder, "both X_train.npy and shards")
    (folder / "X_train.npy").unlink()
    (folder / "y_test.npy").unlink()
    _raises(folder, "no y_test.npy")
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"features:{tmp_path / 'absent'}")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(f"features:{folder / 'y_train.npy'}")


def test_a_fifo_is_refused_without_waiting(tmp_path):
    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    (folder / "X_test.npy").unlink()
    import os
    os.mkfifo(folder / "X_test.npy")
    with pytest.raises(DatasetError, match="X_test.npy"):
        load_dataset(f"features:{folder}")


def test_map_npy_of_an_empty_array(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 4), np.float32))
    a = map_npy(tmp_path / "e.npy")
    assert a.shape == (0, 4) and a.dtype == np.float32


# ------------------------------------------------------- the blocked NaN/inf scan

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4", np.complex64])
def test_first_nonfinite_row_against_numpy(dtype):
    rng = np.random.default_rng(1)
    for shape in [(1,), (9,), (13, 5), (6, 4, 3)]:
        a = rng.standard_normal(shape).astype(dtype)
        assert first_nonfinite_row(a, block_bytes=40) is None
        for bad in (np.nan, np.inf, -np.inf):
            for pos in {0, a.size // 2, a.size - 1}:
                b = a.copy()
                b.reshape(-1)[pos] = bad
                expected = int(np.flatnonzero(~np.isfinite(b.reshape(len(b), -1)).all(1))[0])
                assert first_nonfinite_row(b, block_bytes=40) == expected
                assert first_nonfinite_row(b) == expected
    assert first_nonfinite_row(np.arange(5)) is None
    assert first_nonfinite_row(np.float32(np.nan)) == 0


def test_first_nonfinite_row_allocates_one_block(tmp_path):
    a = np.zeros((20_000, 256), np.float32)  # 20 MB
    a[-1, -1] = np.nan
    with traced_peak() as peak:
        assert first_nonfinite_row(a, block_bytes=1 << 20) == 19_999
    assert peak.bytes < 3 * 2**20, peak.bytes


# ------------------------------------------------------------- crafted inputs

def _valid(n: int, kind: str) -> bytes:
    if kind == "X":
        return npy_bytes("<f2", (n, 3), np.ones((n, 3), "<f2").tobytes())
    return npy_bytes("<i8", (n,), (np.arange(n, dtype="<i8") % 2).tobytes())


@st.composite
def npy_files(draw, kind: str):
    """A .npy file whose header may lie about its data, or a valid one, maybe cut."""
    if draw(st.integers(0, 3)) == 0:
        raw = _valid(draw(st.integers(0, 6)), kind)
    else:
        descr = draw(st.sampled_from(["<f4", "<f2", "|u1", "<i8", ">f4", "<u8", "|b1", "<U2",
                                      "|O", "<f8"]))
        shape = draw(st.one_of(st.lists(st.integers(0, 6), max_size=3),
                               st.lists(st.integers(-1, 2**62), max_size=2)))
        size = np.dtype(descr).itemsize
        exact = size * math.prod(shape) if all(d >= 0 for d in shape) else 0
        n_data = exact + draw(st.sampled_from([0, 0, -1, 1])) if exact <= 4096 \
            else draw(st.integers(0, 64))
        payload = draw(st.binary(min_size=max(n_data, 0), max_size=max(n_data, 0)))
        raw = npy_bytes(descr, shape, payload, fortran=draw(st.booleans()))
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=npy_files("X"), y=npy_files("y"), shard=npy_files("X"),
       which=st.sampled_from(["X_train", "y_train", "X_test", "shard"]))
def test_crafted_files_load_or_raise_the_typed_error(x, y, shard, which):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {"X_train-00000.npy": _valid(4, "X"), "X_train-00001.npy": shard,
                 "y_train.npy": _valid(4, "y"), "X_test.npy": _valid(2, "X"),
                 "y_test.npy": _valid(2, "y")}
        if which == "X_train":
            files["X_train-00000.npy"] = x
        elif which == "y_train":
            files["y_train.npy"] = y
        elif which == "X_test":
            files["X_test.npy"] = x
        for name, raw in files.items():
            (folder / name).write_bytes(raw)
        before = snapshot(folder)
        with traced_peak() as peak:
            try:
                ds = load_dataset(f"features:{folder}")
            except DatasetError as exc:
                assert str(folder) in str(exc) and "\n" not in str(exc), str(exc)
            else:
                assert isinstance(ds, Dataset)
                for X in (ds.X_train, ds.X_test):
                    assert np.isfinite(np.asarray(X, dtype=np.float64)).all()
                assert len(ds.X_train) == len(ds.y_train)
        assert peak.bytes < 8 * 2**20, peak.bytes
        assert snapshot(folder) == before


def test_an_oversized_class_name_file_is_refused_unread(tmp_path):
    from imgcls.datasets.features import MAX_CLASSES_BYTES

    X, y = data()
    folder = write_set(tmp_path / "s", X, y)
    with open(folder / "classes.txt", "wb") as f:
        f.truncate(MAX_CLASSES_BYTES + 1)  # sparse: no disk used
    with traced_peak() as peak:
        _raises(folder, "over 64 MiB of class names", folder / "classes.txt")
    assert peak.bytes < 2**20
