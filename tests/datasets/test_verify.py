"""``verify_dataset``: checks within the official sizes, never an exception for a bad file."""

import gzip
import tracemalloc

from imgcls.datasets.verify import verify_dataset


def test_gzip_bomb_is_a_mismatch_found_within_the_official_size(tmp_path):
    # Not the served bytes, so its content is checked: decompression stops at the
    # official 60,008 bytes instead of inflating 20 MiB.
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(20 << 20), mtime=0))
    tracemalloc.start()
    try:
        rows = verify_dataset("mnist", root=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    row = {r["file"]: r for r in rows}["train-labels-idx1-ubyte.gz"]
    assert row["status"] == "mismatch"
    assert f"{path}: decompresses to more than 60008 bytes" in row["detail"]
    assert peak < 2 << 20, f"peak {peak} bytes"


def test_corrupt_gzip_is_a_mismatch_not_an_exception(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(range(256)) * 4)[:40])
    row = {r["file"]: r for r in verify_dataset("mnist", root=tmp_path)}[path.name]
    assert row["status"] == "mismatch" and "truncated gzip" in row["detail"]
