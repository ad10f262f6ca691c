"""IDX and gzip reading within bounds: sizes checked before allocation, typed errors only."""

import gzip
import hashlib
import os
import struct
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peak_memory import call_peak
from imgcls.datasets import idx
from imgcls.datasets.idx import (IDX_DTYPES, OUT_CHUNK, decode_maybe_gzip, gunzip, gunzip_exact,
                                 gunzip_sha256, iter_gunzip, parse_idx, read_idx,
                                 read_maybe_gzip)
from imgcls.errors import DatasetError, FormatError

BOMB_ZEROS = 20 << 20  # 20 MiB of zeros compress to about 20 KB


def _header(dims, type_code=0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)




def _finishes(fn, seconds=5.0):
    """Call ``fn`` in a thread; return its outcome, or fail if it blocks (e.g. on a FIFO)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread.is_alive(), outcome


# --- declared sizes ---

def test_dimensions_whose_product_wraps_int64_are_a_format_error():
    # 65536 ** 4 = 2 ** 64 wraps to 0 in int64 and would "match" the 0 bytes present
    with pytest.raises(FormatError, match=r"x\.idx: truncated IDX file.*\(65536, 65536"):
        parse_idx(_header([65536] * 4), "x.idx")
    with pytest.raises(FormatError, match=r"x\.idx: truncated IDX file"):
        parse_idx(_header([2**32 - 1] * 3, 0x0E) + b"\0" * 8, "x.idx")


def test_shape_numpy_cannot_hold_is_a_format_error():
    with pytest.raises(FormatError, match=r"x\.idx: IDX shape .* cannot be an array"):
        parse_idx(_header([0] + [2**32 - 1] * 3), "x.idx")
    with pytest.raises(FormatError, match=r"x\.idx: IDX shape .* cannot be an array"):
        parse_idx(_header([1] * 70) + b"\0", "x.idx")


@settings(max_examples=300, deadline=None)
@given(type_code=st.sampled_from(sorted(IDX_DTYPES) + [0x00, 0x0A]),
       dims=st.lists(st.sampled_from([0, 1, 2, 3, 255, 65536, 2**31, 2**32 - 1]), max_size=6),
       n_data=st.integers(0, 64), cut=st.integers(0, 30))
def test_any_header_parses_to_its_shape_or_raises_format_error(type_code, dims, n_data, cut):
    raw = _header(dims, type_code) + bytes(n_data)
    raw = raw[:len(raw) - cut] if cut < len(raw) else raw
    try:
        out = parse_idx(raw, "x.idx")
    except FormatError as exc:
        assert str(exc).startswith("x.idx: ")
        return
    assert out.shape == tuple(dims) and out.dtype.isnative and out.flags.writeable
    assert out.nbytes == len(raw) - 4 - 4 * len(dims)


# --- gzip: bounded inflation ---

def test_gzip_bomb_is_stopped_at_the_known_size():
    bomb = gzip.compress(_header([60000]) + bytes(BOMB_ZEROS), mtime=0)
    assert len(bomb) < 64 << 10
    error, peak = call_peak(lambda: decode_maybe_gzip(bomb, "train-labels-idx1-ubyte.gz",
                                                  max_size=60008))
    assert isinstance(error, FormatError)
    assert "train-labels-idx1-ubyte.gz: decompresses to more than 60008 bytes" in str(error)
    assert peak < 2 << 20, f"peak {peak} bytes"


@pytest.mark.parametrize("head, msg", [
    (b"", "wrong magic number 0x00000000"),  # no IDX header: refused from its first bytes
    (_header([BOMB_ZEROS]), f"its IDX header declares {BOMB_ZEROS + 8} bytes, more than 60008"),
])
def test_gzip_bomb_is_refused_from_its_header_before_inflating(head, msg):
    bomb = gzip.compress(head + bytes(BOMB_ZEROS), mtime=0)
    error, peak = call_peak(lambda: gunzip(bomb, "train-labels-idx1-ubyte.gz", max_size=60008))
    assert isinstance(error, FormatError)
    assert f"train-labels-idx1-ubyte.gz: {msg}" in str(error)
    assert peak < 2 << 20, f"peak {peak} bytes"


def test_iter_gunzip_holds_one_piece_at_a_time():
    raw = _header([3 * OUT_CHUNK]) + bytes(range(256)) * (3 * OUT_CHUNK // 256)
    data = gzip.compress(raw, mtime=0)
    pieces = list(iter_gunzip(data, "x.gz", len(raw), "test"))
    assert b"".join(pieces) == raw and max(map(len, pieces)) <= OUT_CHUNK
    assert gunzip_sha256(data, "x.gz", len(raw), "test") == (hashlib.sha256(raw).hexdigest(),
                                                              len(raw))
    exact = gunzip_exact(data, "x.gz", len(raw), "test")
    assert exact == raw and not exact.readonly
    with pytest.raises(FormatError, match=r"x\.gz: decompresses to more than 9 bytes \(test\)"):
        gunzip_sha256(data, "x.gz", 9, "test")
    with pytest.raises(FormatError, match=rf"x\.gz: decompresses to {len(raw)} bytes, expected"):
        gunzip_exact(data, "x.gz", len(raw) + 1, "test")


@pytest.mark.parametrize("members", [1, 2])
def test_second_pass_from_the_marks_of_the_first_is_the_same_content(monkeypatch, members):
    monkeypatch.setattr(idx, "MARK_EVERY", 1000)
    n = 3_000_000  # several pieces of OUT_CHUNK, so several marks
    raw = _header([n]) + bytes(np.random.default_rng(0).integers(0, 4, n, np.uint8))
    cut = len(raw) // 3
    data = (gzip.compress(raw, mtime=0) if members == 1
            else gzip.compress(raw[:cut], mtime=0) + gzip.compress(raw[cut:], mtime=0))
    marks = []
    assert idx.gunzip_sha256(data, "x.gz", len(raw), "test", marks) == (
        hashlib.sha256(raw).hexdigest(), len(raw))
    assert len(marks) > 5 if members == 1 else marks == []  # several members: not split
    assert idx.gunzip_exact(data, "x.gz", len(raw), "test", marks) == raw


def test_parse_idx_uses_a_writable_byte_buffer_in_place():
    raw = bytearray(_header([2, 3]) + bytes(range(6)))
    out = parse_idx(raw, "x.idx", ndim=2)
    assert np.shares_memory(out, np.frombuffer(raw, np.uint8)) and out.flags.writeable
    frozen = parse_idx(bytes(raw), "x.idx", ndim=2)  # read-only input: a writable copy
    assert frozen.flags.writeable and frozen.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_gzip_bomb_is_stopped_at_the_size_its_header_declares(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_header([10]) + bytes(BOMB_ZEROS), mtime=0))
    error, peak = call_peak(lambda: read_idx(path))
    assert isinstance(error, FormatError)
    assert f"{path}: decompresses to more than" in str(error) and "IDX header" in str(error)
    assert peak < 1 << 20, f"peak {peak} bytes"


def test_plain_file_longer_than_its_header_is_not_read_whole(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_header([10]) + bytes(BOMB_ZEROS))
    error, peak = call_peak(lambda: read_idx(path))
    assert isinstance(error, FormatError)
    assert f"{path}: {BOMB_ZEROS + 8} bytes, more than" in str(error)
    assert peak < 1 << 20, f"peak {peak} bytes"


def test_plain_file_longer_than_the_known_size(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_header([10]) + bytes(10))
    assert read_maybe_gzip(path, max_size=18)[0] == path.read_bytes()
    with pytest.raises(FormatError, match=f"{path}: 18 bytes, more than 17 \\(official\\)"):
        read_maybe_gzip(path, max_size=17, why="official")


def test_slightly_long_gzip_content_is_reported_exactly(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_header([10]) + bytes(17)))
    with pytest.raises(FormatError, match="needs 10 bytes of data but 17 follow"):
        read_idx(path)


def test_multi_member_and_zero_padded_gzip_read_like_gzip_decompress():
    raw = _header([6]) + bytes(range(6))
    data = gzip.compress(raw[:5]) + b"\0" * 7 + gzip.compress(raw[5:])
    assert gzip.decompress(data) == raw
    assert gunzip(data, "x.gz") == raw
    np.testing.assert_array_equal(parse_idx(gunzip(data, "x.gz", max_size=len(raw)), "x"),
                                  np.arange(6))


@pytest.mark.parametrize("mangle, msg", [
    (lambda b: b[:len(b) // 2], "truncated gzip"),
    (lambda b: b[:-8] + bytes([b[-8] ^ 1]) + b[-7:], "corrupt gzip.*check"),  # CRC-32
    (lambda b: b + b"garbage", "corrupt gzip"),
    (lambda b: b"<html>" + b, "not a gzip file.*HTML"),
])
def test_damaged_gzip_is_a_format_error(mangle, msg):
    good = gzip.compress(_header([100]) + bytes(range(100)), mtime=0)
    with pytest.raises(FormatError, match=f"x.gz: {msg}"):
        gunzip(mangle(good), "x.gz")


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_gzip_inflates_within_the_bound_or_raises_format_error(data):
    raw = _header([4, 5]) + bytes(range(20))
    blob = bytearray(gzip.compress(raw, mtime=0))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    bound = data.draw(st.sampled_from([None, len(raw), 5]))
    try:
        out = gunzip(bytes(blob), "x.gz", max_size=bound)
    except FormatError as exc:
        assert str(exc).startswith("x.gz: ")
        return
    assert len(out) <= (bound if bound is not None else 2**32)


# --- only regular files ---

def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "train-labels-idx1-ubyte"
    os.mkfifo(fifo)
    try:
        blocked, outcome = _finishes(lambda: read_idx(fifo))
    finally:
        # unblock an old-style reader that opened the FIFO, so the thread ends
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if blocked else None
        if fd is not None:
            os.close(fd)
    assert not blocked, "reading a FIFO blocked"
    assert isinstance(outcome.get("error"), DatasetError)
    assert "FIFO" in str(outcome["error"]) and str(fifo) in str(outcome["error"])


def test_directory_is_refused(tmp_path):
    folder = tmp_path / "t10k-labels-idx1-ubyte.gz"
    folder.mkdir()
    with pytest.raises(DatasetError, match=f"{folder}: a directory, not a regular IDX file"):
        read_idx(folder)



def test_header_declaring_more_than_any_machine_holds(tmp_path):
    # (2**32 - 1) ** 8 bytes: the bound cannot even be passed to zlib as a size
    blob = gzip.compress(_header([2**32 - 1] * 8) + bytes(10))
    with pytest.raises(FormatError, match=r"x\.gz: truncated IDX file"):
        parse_idx(gunzip(blob, "x.gz"), "x.gz")
    path = tmp_path / "plain"
    path.write_bytes(_header([2**32 - 1] * 8) + bytes(10))
    with pytest.raises(FormatError, match="truncated IDX file"):
        read_idx(path)


def test_a_generous_bound_costs_only_the_bytes_present(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(_header([10]) + bytes(10))
    result, peak = call_peak(lambda: read_maybe_gzip(path, max_size=1 << 40))
    assert result is None and peak < 1 << 20, f"peak {peak} bytes"
