import os
import socket

import numpy as np
import pytest

from datasets_helpers import (IDX_STEMS, idx_bytes, no_partial_files, sha256, small_idx_set,
                              write_idx_set)
from imgcls.datasets import cache_dir, load_dataset, resources
from imgcls.datasets import download as download_module
from imgcls.datasets.download import RemoteFile, describe_failure, download
from imgcls.errors import DownloadError

PAYLOAD = os.urandom(300_000)
REMOTE = RemoteFile("blob.bin", sha256(PAYLOAD), len(PAYLOAD))


@pytest.fixture
def served(http_server):
    http_server.files["blob.bin"] = PAYLOAD
    return http_server


def test_good_mirror(served, tmp_path):
    path = download(REMOTE, [served.url("good")], tmp_path / "d")
    assert path == tmp_path / "d" / "blob.bin" and path.read_bytes() == PAYLOAD
    assert no_partial_files(tmp_path)
    # a User-Agent of our own (some mirrors refuse urllib's default)
    assert served.user_agents == ["imgcls-dataset-downloader"]


def test_failing_mirrors_are_skipped_in_order(served, tmp_path):
    path = download(REMOTE, [served.url("fail500"), served.url("missing"), served.url("good")],
                    tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [p.split("/")[1] for p, _ in served.requests] == ["fail500", "missing", "good"]


def test_bad_checksum_deletes_the_part_and_tries_the_next_mirror(served, tmp_path):
    path = download(REMOTE, [served.url("bad"), served.url("good")], tmp_path)
    assert path.read_bytes() == PAYLOAD
    # the good mirror was asked for the whole file: the bad bytes were not resumed
    assert served.requests[-1] == ("/good/blob.bin", None)


def test_all_mirrors_failing_lists_each_failure_and_leaves_nothing(served, tmp_path):
    mirrors = [served.url(b) for b in ("fail500", "missing", "bad", "html")]
    with pytest.raises(DownloadError) as info:
        download(REMOTE, mirrors, tmp_path)
    msg = str(info.value)
    assert "blob.bin" in msg and "HTTP 500" in msg and "HTTP 404" in msg
    assert "SHA-256 mismatch" in msg  # 'bad': same length, wrong bytes
    assert "wrong size: got a complete response of 60 bytes" in msg  # 'html'
    assert list(tmp_path.iterdir()) == []


def test_cut_transfer_keeps_only_a_part_file(served, tmp_path):
    with pytest.raises(DownloadError, match="transfer cut after 150000 of 300000 bytes"):
        download(REMOTE, [served.url("cut")], tmp_path, retries=0)
    assert not (tmp_path / "blob.bin").exists()
    assert (tmp_path / "blob.bin.part").stat().st_size == len(PAYLOAD) // 2


def test_cut_transfer_is_resumed_with_a_range_request(served, tmp_path):
    path = download(REMOTE, [served.url("cut"), served.url("good")], tmp_path, retries=0)
    assert path.read_bytes() == PAYLOAD and no_partial_files(tmp_path)
    assert served.requests[-1] == ("/good/blob.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_server_ignoring_range_restarts_from_zero(served, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:1000])
    path = download(REMOTE, [served.url("norange")], tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert served.requests[-1][1] == "bytes=1000-"


def test_stale_wrong_part_is_discarded_after_the_checksum(served, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(b"x" * 1000)  # not a prefix of the file
    path = download(REMOTE, [served.url("good"), served.url("good")], tmp_path)
    assert path.read_bytes() == PAYLOAD and no_partial_files(tmp_path)


def test_part_longer_than_the_file_is_dropped(served, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD + b"extra")
    assert download(REMOTE, [served.url("good")], tmp_path).read_bytes() == PAYLOAD


def test_unreachable_mirror(tmp_path):
    with pytest.raises(DownloadError, match="127.0.0.1:9/"):
        download(REMOTE, ["http://127.0.0.1:9"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_each_mirror_failure_reason_reaches_one_line(served, tmp_path):
    refused = f"http://127.0.0.1:{_closed_port()}/x"
    mirrors = ["http://mirror.invalid/x", refused, served.url("missing"), served.url("bad")]
    with pytest.raises(DownloadError) as info:
        download(REMOTE, mirrors, tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    head, _, reasons = msg.partition(" from any mirror: ")
    assert head.endswith("could not download blob.bin")
    parts = reasons.split("; ")
    assert len(parts) == 4, msg
    assert parts[0].startswith("http://mirror.invalid/x/blob.bin: DNS lookup failed (")
    assert parts[1].startswith(f"{refused}/blob.bin: connection refused (")
    assert parts[2] == f"{served.url('missing')}/blob.bin: HTTP 404 Not Found"
    assert parts[3].startswith(f"{served.url('bad')}/blob.bin: SHA-256 mismatch (got ")


def test_a_silent_server_is_reported_as_a_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "TIMEOUT", 0.3)
    with socket.socket() as sock:  # accepts connections (backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
        with pytest.raises(DownloadError,
                           match=f"{url}/blob.bin: timed out \\(no data for 0.3 s\\)"):
            download(REMOTE, [url], tmp_path, retries=0)


def test_reasons_are_named_for_each_kind_of_failure():
    import ssl
    import urllib.error

    assert describe_failure(urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
                            ) == "DNS lookup failed ([Errno -2] Name or service not known)"
    assert describe_failure(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
                            ) == "connection refused ([Errno 111] Connection refused)"
    assert describe_failure(TimeoutError()).startswith("timed out (no data for")
    assert describe_failure(urllib.error.URLError(ssl.SSLError(1, "bad cert"))
                            ).startswith("TLS error")
    assert describe_failure(ValueError("unknown url type: 'ftpx'")) == "unknown url type: 'ftpx'"
    assert describe_failure(OSError()) == "OSError"
    assert describe_failure(urllib.error.URLError("two\nlines")) == "two lines"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLS_DATA", str(tmp_path / "env"))
    assert cache_dir("mnist") == tmp_path / "env" / "mnist"
    monkeypatch.delenv("IMGCLS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "imgcls"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("cifar10") == tmp_path / "home" / ".cache" / "imgcls" / "cifar10"


def _serve_idx_set(server, monkeypatch):
    """Serve a small MNIST-format set and register its checksums as official."""
    import gzip

    data = small_idx_set(seed=5)
    files = []
    for split, (img, lab) in IDX_STEMS.items():
        for stem, arr in ((img, data[split][0]), (lab, data[split][1])):
            raw = idx_bytes(arr)
            gz = gzip.compress(raw, mtime=0)
            server.files[stem + ".gz"] = gz
            files.append(RemoteFile(stem + ".gz", sha256(gz), len(gz), sha256(raw)))
    monkeypatch.setitem(resources.FILES, "mnist", files)
    return data


def test_load_dataset_downloads_into_the_cache_dir(http_server, monkeypatch, isolated_cache):
    data = _serve_idx_set(http_server, monkeypatch)
    monkeypatch.setitem(resources.MIRRORS, "mnist",
                        [http_server.url("fail500"), http_server.url("good")])
    ds = load_dataset("mnist", download=True)
    np.testing.assert_array_equal(ds.X_train[..., 0], data["train"][0])
    assert sorted(p.name for p in (isolated_cache / "mnist").iterdir()) == sorted(
        s + ".gz" for pair in IDX_STEMS.values() for s in pair)
    n = len(http_server.requests)
    load_dataset("mnist")  # second time: from the cache, nothing fetched
    assert len(http_server.requests) == n


def test_download_with_root_and_mirrors_option(http_server, monkeypatch, tmp_path):
    _serve_idx_set(http_server, monkeypatch)
    ds = load_dataset("mnist", root=tmp_path / "mine", download=True,
                      mirrors=[http_server.url("good")])
    assert ds.X_test.shape == (10, 28, 28, 1) and str(tmp_path / "mine") in ds.source


def test_failed_download_leaves_no_file_under_a_final_name(http_server, monkeypatch,
                                                          isolated_cache):
    _serve_idx_set(http_server, monkeypatch)
    monkeypatch.setitem(resources.MIRRORS, "mnist", [http_server.url("html"),
                                                     http_server.url("cut")])
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", download=True)
    folder = isolated_cache / "mnist"
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".part")] == []


def test_existing_files_in_root_are_not_fetched(http_server, monkeypatch, tmp_path):
    data = _serve_idx_set(http_server, monkeypatch)
    write_idx_set(tmp_path, data)
    load_dataset("mnist", root=tmp_path, download=True, mirrors=[http_server.url("good")])
    assert http_server.requests == []


def test_official_mirrors_are_https():
    for name, mirrors in resources.MIRRORS.items():
        assert mirrors and all(m.startswith("https://") for m in mirrors), name
