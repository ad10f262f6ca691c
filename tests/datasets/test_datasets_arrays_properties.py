"""Property: any npz/npy input either loads or raises DatasetError naming the file.

Headers are generated field by field (dtype, shape, order, version, data
length) so that they can claim what the bytes do not hold; whole archives are
also mutated byte by byte.  Each input is read under ``tracemalloc`` to show
that nothing close to a claimed size is ever allocated, and the folder is
compared before and after to show that reading writes nothing.
"""

import math
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import sklearn.model_selection  # noqa: F401  (imported lazily by the split; not traced)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets_helpers import npy_bytes, npz_bytes, snapshot
from imgcls.datasets import Dataset, load_dataset
from imgcls.datasets.arrays import read_arrays
from imgcls.errors import DatasetError

# Peak bytes traced while reading one input of a few KB: the arrays it really
# holds, numpy/zipfile bookkeeping, and hypothesis' own allocations.
PEAK_BUDGET = 8 * 2 ** 20

DESCRS = ["<f8", ">f4", "<f2", "|u1", "|i1", "<i8", ">u2", "|b1", "<U3", ">U2", "|S4",
          "|O", "<c8", "|V4", "<M8[D]", "<m8[s]", "<U0", "|S0", "<f16"]

descrs = st.one_of(st.sampled_from(DESCRS), st.text(max_size=6))
dims = st.one_of(st.integers(0, 8), st.integers(-2, 2 ** 70))
shapes = st.one_of(st.lists(dims, max_size=4), st.lists(st.integers(0, 2), min_size=30,
                                                        max_size=40))


def _itemsize(descr) -> int | None:
    try:
        return np.dtype(descr).itemsize
    except Exception:  # any descr numpy does not accept: the size is unknown
        return None


@st.composite
def npy_members(draw):
    """Bytes of one .npy member whose header may lie about its data."""
    descr = draw(descrs)
    shape = draw(shapes)
    fortran = draw(st.booleans())
    version = draw(st.sampled_from([(1, 0), (1, 0), (2, 0), (3, 0), (0, 9)]))
    size = _itemsize(descr)
    exact = (size * math.prod(shape) if size is not None and all(d >= 0 for d in shape)
             else None)
    if exact is not None and exact <= 4096 and draw(st.integers(0, 3)):
        n_data = exact + draw(st.sampled_from([0, 0, 0, -1, 1, -8]))
    else:
        n_data = draw(st.integers(0, 256))
    data = draw(st.binary(min_size=max(n_data, 0), max_size=max(n_data, 0)))
    raw = npy_bytes(descr, shape, data, fortran=fortran, version=version)
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]


def _valid(n: int, kind: str) -> bytes:
    if kind == "X":
        return npy_bytes("<f4", (n, 2), np.ones((n, 2), "<f4").tobytes())
    return npy_bytes("<i8", (n,), (np.arange(n, dtype="<i8") % 2).tobytes())


def _check_one(path: Path, folder: Path) -> None:
    before = snapshot(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    tracemalloc.start()
    try:
        try:
            ds = load_dataset(f"npz:{path}")
        except DatasetError as exc:
            assert str(path) in str(exc), str(exc)
            assert "\n" not in str(exc)
        else:
            assert isinstance(ds, Dataset)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BUDGET + 10 * size, (peak, size)
    assert snapshot(folder) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.one_of(npy_members(), st.just(_valid(10, "X"))),
       y=st.one_of(npy_members(), st.just(_valid(10, "y"))),
       container=st.sampled_from(["stored", "deflated", "folder"]))
def test_crafted_headers_load_or_raise_the_typed_error(x, y, container):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if container == "folder":
            (folder / "X.npy").write_bytes(x)
            (folder / "y.npy").write_bytes(y)
            path = folder
        else:
            path = folder / "a.npz"
            path.write_bytes(npz_bytes({"X.npy": x, "y.npy": y},
                                       deflate=container == "deflated"))
        _check_one(path, folder)


def _valid_npz(deflate: bool) -> bytes:
    members = {"X_train.npy": _valid(6, "X"), "y_train.npy": _valid(6, "y"),
               "X_test.npy": _valid(2, "X"), "y_test.npy": _valid(2, "y")}
    return npz_bytes(members, deflate=deflate)


VALID = {False: _valid_npz(False), True: _valid_npz(True)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deflate=st.booleans(),
       edits=st.lists(st.tuples(st.integers(0, 2 ** 16), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 2 ** 16)))
def test_mutated_archives_load_or_raise_the_typed_error(deflate, edits, cut):
    data = bytearray(VALID[deflate])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        path.write_bytes(bytes(data))
        _check_one(path, Path(tmp))


@settings(max_examples=40, deadline=None)
@given(arrays=st.dictionaries(
    st.sampled_from(["X", "y", "classes", "other"]),
    st.sampled_from([np.arange(6.0).reshape(3, 2), np.array([0, 1, 0]), np.array(["a", "b"]),
                     np.zeros((3, 2, 2), np.uint8), np.array([True, False, True])]),
    min_size=1))
def test_read_arrays_returns_exactly_what_numpy_saved(arrays):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ok.npz"
        np.savez(path, **arrays)
        wanted = {k: v for k, v in arrays.items() if k != "other"}
        if not wanted:
            try:
                read_arrays(path)
            except DatasetError as exc:
                assert "found ['other']" in str(exc)
            else:
                raise AssertionError("an archive without known arrays was accepted")
            return
        got, where = read_arrays(path)
        assert sorted(got) == sorted(wanted)
        for k, v in wanted.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            assert where[k] == f"{path}[{k}]"
