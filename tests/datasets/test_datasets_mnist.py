import gzip
import time

import numpy as np
import pytest

from datasets_helpers import (IDX_STEMS, MNIST_TRAIN_COUNTS, idx_bytes, sha256, small_idx_set,
                              snapshot, write_idx_set)
from peak_memory import call_peak
from imgcls.datasets import load_dataset, resources
from imgcls.datasets.download import RemoteFile
from imgcls.datasets.idx import parse_idx
from imgcls.errors import ChecksumError, DatasetError, FormatError


def test_shared_mnist_loads_verified_with_official_counts(mnist_root):
    start = time.perf_counter()
    ds = load_dataset("mnist", root=mnist_root)
    elapsed = time.perf_counter() - start
    assert ds.X_train.shape == (60000, 28, 28, 1) and ds.X_test.shape == (10000, 28, 28, 1)
    assert ds.X_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                               974, 1009]
    assert "verified" in ds.source and str(mnist_root) in ds.source
    assert ds.X_train.flags.writeable
    # The bar is 3 s; measured ~1 s on the 2-core machine.
    assert elapsed < 3.0, f"loading MNIST took {elapsed:.2f} s"


def test_shared_mnist_is_byte_identical_to_the_official_content(mnist_root):
    # SHA256SUMS.raw of the shared copy lists the official decompressed files.
    official = dict(line.split()[::-1] for line in
                    (mnist_root / "SHA256SUMS.raw").read_text().splitlines() if line.strip())
    ds = load_dataset("mnist", root=mnist_root)
    arrays = {"train-images-idx3-ubyte": ds.X_train[..., 0], "train-labels-idx1-ubyte": ds.y_train,
              "t10k-images-idx3-ubyte": ds.X_test[..., 0], "t10k-labels-idx1-ubyte": ds.y_test}
    for stem, array in arrays.items():
        assert sha256(idx_bytes(array.astype(np.uint8))) == official[stem], stem
        assert len(idx_bytes(array)) == resources.RAW_SIZES[stem]




BOMB = gzip.compress(bytes(20 << 20), mtime=0)  # 20 MiB of zeros in about 20 KB


def _official_with_sizes(monkeypatch, name, data, content_checksums=True):
    """Like ``_patch_checksums``, with the content sizes the loader bounds reads by."""
    files = []
    for split, (img, lab) in IDX_STEMS.items():
        for stem, arr in ((img, data[split][0]), (lab, data[split][1])):
            raw = idx_bytes(arr)
            files.append(RemoteFile(stem + ".gz", sha256(gzip.compress(raw, mtime=0)), None,
                                    sha256(raw) if content_checksums else None, len(raw)))
    monkeypatch.setitem(resources.FILES, name, files)


def test_gzip_bomb_under_an_official_name_stops_at_the_official_size(tmp_path, monkeypatch):
    data = small_idx_set()
    _official_with_sizes(monkeypatch, "mnist", data)
    path = write_idx_set(tmp_path, data)["t10k-labels-idx1-ubyte"]
    path.write_bytes(BOMB)
    error, peak = call_peak(lambda: load_dataset("mnist", root=tmp_path))
    assert isinstance(error, FormatError), error
    assert (f"{path}: decompresses to more than 18 bytes (the size of the official "
            f"t10k-labels-idx1-ubyte)") in str(error)
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_gzip_bomb_stops_at_the_official_size_without_verify(tmp_path, monkeypatch):
    data = small_idx_set()
    _official_with_sizes(monkeypatch, "mnist", data)
    path = write_idx_set(tmp_path, data)["train-labels-idx1-ubyte"]
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(20 << 20, np.uint8)), mtime=0))
    error, peak = call_peak(lambda: load_dataset("mnist", root=tmp_path, verify=False))
    assert isinstance(error, FormatError), error
    assert (f"{path}: its IDX header declares {8 + (20 << 20)} bytes, more than 38 (the size "
            f"of the official") in str(error)
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_gzip_bomb_without_a_content_checksum_is_never_decompressed(tmp_path, monkeypatch):
    data = small_idx_set()
    _official_with_sizes(monkeypatch, "fashion-mnist", data, content_checksums=False)
    path = write_idx_set(tmp_path, data)["train-images-idx3-ubyte"]
    path.write_bytes(BOMB)
    error, peak = call_peak(lambda: load_dataset("fashion-mnist", root=tmp_path))
    assert isinstance(error, ChecksumError) and str(path) in str(error)
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_uncompressed_file_longer_than_the_official_one_is_not_read_whole(tmp_path,
                                                                         monkeypatch):
    data = small_idx_set()
    _official_with_sizes(monkeypatch, "mnist", data)
    write_idx_set(tmp_path, data)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(data["test"][1]) + bytes(20 << 20))
    error, peak = call_peak(lambda: load_dataset("mnist", root=tmp_path))
    assert isinstance(error, FormatError), error
    assert f"{path}: {18 + (20 << 20)} bytes, more than" in str(error)
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_official_content_sizes_are_known_for_both_data_sets():
    sizes = {"train-images-idx3-ubyte": 47040016, "train-labels-idx1-ubyte": 60008,
             "t10k-images-idx3-ubyte": 7840016, "t10k-labels-idx1-ubyte": 10008}
    for name in ("mnist", "fashion-mnist"):
        assert {r.filename[:-3]: r.raw_size for r in resources.FILES[name]} == sizes


def _patch_checksums(monkeypatch, name, data):
    """Make the fixture files 'official' for this test (served .gz and raw content)."""
    files = []
    for split, (img, lab) in IDX_STEMS.items():
        for stem, arr in ((img, data[split][0]), (lab, data[split][1])):
            raw = idx_bytes(arr)
            files.append(RemoteFile(stem + ".gz", sha256(gzip.compress(raw, mtime=0)),
                                    None, sha256(raw)))
    monkeypatch.setitem(resources.FILES, name, files)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_fixture_in_release_format(tmp_path, monkeypatch, gz):
    data = small_idx_set()
    write_idx_set(tmp_path, data, gz=gz)
    _patch_checksums(monkeypatch, "fashion-mnist", data)
    ds = load_dataset("fashion-mnist", root=tmp_path)
    np.testing.assert_array_equal(ds.X_train[..., 0], data["train"][0])
    np.testing.assert_array_equal(ds.y_test, data["test"][1].astype(np.int64))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.X_test.shape == (10, 28, 28, 1)


def test_recompressed_gz_is_verified_by_its_content(tmp_path, monkeypatch):
    data = small_idx_set()
    _patch_checksums(monkeypatch, "mnist", data)
    paths = write_idx_set(tmp_path, data)
    stem = "train-labels-idx1-ubyte"
    paths[stem].write_bytes(gzip.compress(gzip.decompress(paths[stem].read_bytes()),
                                          compresslevel=1, mtime=12345))
    ds = load_dataset("mnist", root=tmp_path)
    assert "content" in ds.source


def test_missing_files_without_download_name_the_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path}.*download=True"):
        load_dataset("mnist", root=tmp_path)
    assert snapshot(tmp_path) == {}


def _bad_file_case(tmp_path, monkeypatch, stem, content, gz=True):
    data = small_idx_set()
    _patch_checksums(monkeypatch, "fashion-mnist", data)
    paths = write_idx_set(tmp_path, data, gz=gz)
    paths[stem].write_bytes(content)
    return paths[stem], snapshot(tmp_path)


def test_checksum_mismatch_names_the_file_and_changes_nothing(tmp_path, monkeypatch):
    stem = "t10k-images-idx3-ubyte"
    X = small_idx_set()["test"][0].copy()
    X[0, 0, 0] ^= 1  # one flipped bit: a valid IDX file, but not the official one
    path, before = _bad_file_case(tmp_path, monkeypatch, stem, gzip.compress(idx_bytes(X)))
    with pytest.raises(ChecksumError, match=f"{path}.*SHA-256"):
        load_dataset("fashion-mnist", root=tmp_path)
    assert snapshot(tmp_path) == before


def test_html_page_saved_as_gz(tmp_path, monkeypatch):
    html = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>"
    path, before = _bad_file_case(tmp_path, monkeypatch, "train-images-idx3-ubyte", html)
    with pytest.raises(FormatError, match=f"{path}.*not a gzip file.*HTML"):
        load_dataset("fashion-mnist", root=tmp_path)
    assert snapshot(tmp_path) == before


def test_truncated_gzip(tmp_path, monkeypatch):
    full = gzip.compress(idx_bytes(small_idx_set()["train"][0]))
    path, before = _bad_file_case(tmp_path, monkeypatch, "train-images-idx3-ubyte",
                                  full[: len(full) // 2])
    with pytest.raises(FormatError, match=f"{path}.*truncated gzip"):
        load_dataset("fashion-mnist", root=tmp_path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("verify", [True, False])
def test_truncated_idx(tmp_path, monkeypatch, verify):
    raw = idx_bytes(small_idx_set()["train"][0])
    path, before = _bad_file_case(tmp_path, monkeypatch, "train-images-idx3-ubyte",
                                  raw[:-100], gz=False)
    if verify:  # the checksum notices first
        with pytest.raises(ChecksumError, match=str(path)):
            load_dataset("fashion-mnist", root=tmp_path)
    else:
        with pytest.raises(FormatError, match=f"{path}.*truncated IDX file.*shape \\(30, 28, 28\\)"):
            load_dataset("fashion-mnist", root=tmp_path, verify=False)
    assert snapshot(tmp_path) == before


def test_wrong_magic_number(tmp_path, monkeypatch):
    raw = bytearray(idx_bytes(small_idx_set()["test"][1]))
    raw[2] = 0x42
    path, before = _bad_file_case(tmp_path, monkeypatch, "t10k-labels-idx1-ubyte",
                                  gzip.compress(bytes(raw)))
    with pytest.raises(FormatError, match=f"{path}.*wrong magic number 0x00004201"):
        load_dataset("fashion-mnist", root=tmp_path, verify=False)
    assert snapshot(tmp_path) == before


def test_size_disagrees_with_header(tmp_path, monkeypatch):
    raw = idx_bytes(small_idx_set()["test"][1]) + b"\x00" * 7
    path, before = _bad_file_case(tmp_path, monkeypatch, "t10k-labels-idx1-ubyte",
                                  gzip.compress(raw))
    with pytest.raises(FormatError, match=f"{path}.*size disagrees.*10 bytes of data but 17"):
        load_dataset("fashion-mnist", root=tmp_path, verify=False)
    assert snapshot(tmp_path) == before


def test_images_and_labels_of_different_lengths(tmp_path, monkeypatch):
    y = np.zeros(9, np.uint8)
    path, before = _bad_file_case(tmp_path, monkeypatch, "t10k-labels-idx1-ubyte",
                                  gzip.compress(idx_bytes(y)))
    with pytest.raises(DatasetError, match="10 images but .*t10k-labels.* 9 labels"):
        load_dataset("fashion-mnist", root=tmp_path, verify=False)


def test_label_out_of_range(tmp_path, monkeypatch):
    y = np.full(10, 10, np.uint8)
    path, _ = _bad_file_case(tmp_path, monkeypatch, "t10k-labels-idx1-ubyte",
                             gzip.compress(idx_bytes(y)))
    with pytest.raises(DatasetError, match=f"{path}.*label 10"):
        load_dataset("fashion-mnist", root=tmp_path, verify=False)


def test_parse_idx_reads_other_types_native_endian():
    values = np.array([[1.5, -2.0], [3.25, 4.0]], dtype=">f4")
    raw = bytes([0, 0, 0x0D, 2]) + (2).to_bytes(4, "big") * 2 + values.tobytes()
    out = parse_idx(raw, "x.idx")
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("raw, msg", [(b"\x00\x00", "needs at least 4"),
                                      (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header")])
def test_parse_idx_short_headers(raw, msg):
    with pytest.raises(FormatError, match=msg):
        parse_idx(raw, "x.idx")


def test_uncompressed_copy_without_known_content_checksum_warns(tmp_path):
    # Fashion-MNIST's official raw checksums are unknown: loading an unpacked copy
    # works but says it was not verified.
    write_idx_set(tmp_path, small_idx_set(), gz=False)
    with pytest.warns(UserWarning, match="no official SHA-256"):
        ds = load_dataset("fashion-mnist", root=tmp_path)
    assert "not verified" in ds.source


# --- content not yet verified is hashed piece by piece, never held (real official sizes) ---

#: The official train-images-idx3-ubyte: header 00 00 08 03 and 60000 x 28 x 28.
TRAIN_IMAGES_HEADER = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
#: Far below the 47,040,016 bytes the old code held (several copies) before refusing.
HASH_PASS_PEAK = 8 << 20


def _zeros_gz(header: bytes, n_zeros: int) -> bytes:
    return gzip.compress(header + bytes(n_zeros), compresslevel=1, mtime=0)


@pytest.mark.parametrize("blob, verify, error, msg", [
    # the official size exactly, wrong content: refused by its checksum
    (lambda: _zeros_gz(TRAIN_IMAGES_HEADER, 60000 * 784), True, ChecksumError,
     "SHA-256 of the decompressed content is"),
    # a bomb that keeps the official header: refused past the official size
    (lambda: _zeros_gz(TRAIN_IMAGES_HEADER, 64 << 20), True, FormatError,
     "decompresses to more than 47040016 bytes"),
    # a header declaring more than the official file: refused from the header
    (lambda: _zeros_gz(TRAIN_IMAGES_HEADER[:4] + (171196).to_bytes(4, "big")
                       + TRAIN_IMAGES_HEADER[8:], 1 << 20), False, FormatError,
     "its IDX header declares 134217680 bytes, more than 47040016"),
])
def test_unverified_content_under_an_official_name_is_never_held(tmp_path, blob, verify,
                                                                 error, msg):
    write_idx_set(tmp_path, small_idx_set())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(blob())
    raised, peak = call_peak(lambda: load_dataset("mnist", root=tmp_path, verify=verify))
    assert isinstance(raised, error) and f"{path}: {msg}" in str(raised), raised
    assert peak < HASH_PASS_PEAK, f"peak {peak / 2**20:.1f} MiB"
