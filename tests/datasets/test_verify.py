"""``verify_dataset``: checks within the official sizes, never an exception for a bad file."""

import gzip

from peak_memory import traced_peak
from imgcls.datasets.verify import verify_dataset


def test_gzip_bomb_is_a_mismatch_found_within_the_official_size(tmp_path):
    # Not the served bytes, so its content is checked: decompression stops at the
    # official 60,008 bytes instead of inflating 20 MiB.
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(20 << 20), mtime=0))
    with traced_peak() as traced:
        rows = verify_dataset("mnist", root=tmp_path)
    peak = traced.bytes
    row = {r["file"]: r for r in rows}["train-labels-idx1-ubyte.gz"]
    assert row["status"] == "mismatch"
    assert f"{path}: decompresses to more than 60008 bytes" in row["detail"]
    assert peak < 2 << 20, f"peak {peak} bytes"


def test_corrupt_gzip_is_a_mismatch_not_an_exception(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(range(256)) * 4)[:40])
    row = {r["file"]: r for r in verify_dataset("mnist", root=tmp_path)}[path.name]
    assert row["status"] == "mismatch" and "truncated gzip" in row["detail"]


def test_content_of_the_official_size_is_hashed_not_held(tmp_path):
    # The official size exactly (header of 60000 x 28 x 28 images), wrong content:
    # hashed piece by piece, never held whole.
    header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(60000 * 784), compresslevel=1, mtime=0))
    with traced_peak() as traced:
        rows = verify_dataset("mnist", root=tmp_path)
    peak = traced.bytes
    row = {r["file"]: r for r in rows}["train-images-idx3-ubyte.gz"]
    assert row["status"] == "mismatch" and "SHA-256 of the content" in row["detail"]
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"
