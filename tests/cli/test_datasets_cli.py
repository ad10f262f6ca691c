import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from imgcls.cli import datasets as cli_datasets

SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run(argv):
    """Parse with only the datasets sub-commands (independent of other CLI modules)."""
    parser = argparse.ArgumentParser(prog="imgcls")
    sub = parser.add_subparsers(dest="command")
    cli_datasets.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_prints_every_name_with_a_description(capsys):
    assert run(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "folder:PATH",
                 "npz:PATH"):
        assert name in out
    assert run(["datasets", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][:2] == ["digits", "mnist"]
    assert all(r["description"] for r in rows)


def test_info_digits_table_and_json(capsys):
    assert run(["datasets", "info", "digits"]) == 0
    out = capsys.readouterr().out
    assert "1437 train / 360 test" in out and "total" in out and "8x8x1" in out
    assert run(["datasets", "info", "digits", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_train"] == 1437 and sum(summary["counts"]["test"]) == 360
    assert summary["skipped"] == []


def test_info_mnist_prints_the_official_counts(capsys):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"the shared MNIST is not at {SHARED_MNIST.resolve()}")
    assert run(["datasets", "info", "mnist", "--root", str(SHARED_MNIST)]) == 0
    out = capsys.readouterr().out
    for count in MNIST_TRAIN_COUNTS:
        assert str(count) in out
    assert "60000 train / 10000 test" in out
    assert run(["datasets", "info", "mnist", "--root", str(SHARED_MNIST), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["train"] == MNIST_TRAIN_COUNTS


def test_verify_shared_mnist_reports_each_file(capsys):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"the shared MNIST is not at {SHARED_MNIST.resolve()}")
    assert run(["datasets", "verify", "mnist", "--root", str(SHARED_MNIST), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert {r["file"] for r in rows} == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}


def test_verify_reports_a_mismatch_and_missing_files(tmp_path, capsys):
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(4)))
    assert run(["datasets", "verify", "mnist", "--root", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    rows = {r["file"]: r for r in json.loads(captured.out)}
    assert rows["train-labels-idx1-ubyte.gz"]["status"] == "mismatch"
    assert rows["t10k-images-idx3-ubyte.gz"]["status"] == "missing"
    assert captured.err == (f"imgcls: error: mnist: 1 file(s) failed the SHA-256 check in "
                            f"{tmp_path}\n")
    assert run(["datasets", "verify", "cifar10", "--root", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err == (f"imgcls: error: cifar10: no file of this data set was "
                                       f"found in {tmp_path / 'none'}\n")


def test_verify_refuses_a_bundled_data_set():
    from imgcls.errors import ConfigError

    with pytest.raises(ConfigError, match="digits"):
        run(["datasets", "verify", "digits"])


def test_download_refuses_local_data_sets():
    from imgcls.errors import ConfigError

    with pytest.raises(ConfigError, match="nothing to download"):
        run(["datasets", "download", "digits"])


def test_download_from_a_local_mirror(tmp_path, monkeypatch, capsys):
    # Serve CIFAR-10-format fixture archive from a local HTTP server.
    import http.server
    import io
    import tarfile
    import threading

    from imgcls.datasets import resources
    from imgcls.datasets.download import RemoteFile

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]:
            data = ("\n".join("abcdefghij")).encode() if f.endswith(".txt") else bytes(
                np.concatenate([[3], rng.integers(0, 256, 3072)]).astype(np.uint8))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{f}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            return None

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        import hashlib

        monkeypatch.setitem(resources.FILES, "cifar10", [RemoteFile(
            "cifar-10-binary.tar.gz", hashlib.sha256(blob).hexdigest(), len(blob))])
        monkeypatch.setitem(resources.MIRRORS, "cifar10",
                            [f"http://127.0.0.1:{server.server_address[1]}/x"])
        root = tmp_path / "c10"
        assert run(["datasets", "download", "cifar10", "--root", str(root), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["n_train"] == 5 and summary["image_shape"] == [32, 32, 3]
        assert run(["datasets", "verify", "cifar10", "--root", str(root), "--json"]) == 0
        statuses = {r["file"]: r["status"] for r in json.loads(capsys.readouterr().out)}
        assert statuses == {"cifar-10-binary.tar.gz": "ok", "cifar-10-python.tar.gz": "missing"}
    finally:
        server.shutdown()
        server.server_close()


def test_bad_image_size_option():
    from imgcls.errors import ConfigError

    with pytest.raises(ConfigError, match="--image-size"):
        run(["datasets", "info", "folder:/nowhere", "--image-size", "big"])


def test_main_prints_errors_as_one_line(tmp_path, capsys):
    from imgcls.cli import main

    assert main(["datasets", "info", "mnist", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgcls: error: mnist:") and "download=True" in err
    assert len(err.strip().splitlines()) == 1


def test_download_without_network_names_each_mirror_and_its_reason(tmp_path, monkeypatch,
                                                                    capsys):
    import socket

    from imgcls.cli import main
    from imgcls.datasets import resources

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/fashion"
    monkeypatch.setitem(resources.MIRRORS, "fashion-mnist", ["http://mirror.invalid/fashion",
                                                             closed])
    assert main(["datasets", "download", "fashion-mnist", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "could not download train-images-idx3-ubyte.gz from any mirror: " in err
    assert ("http://mirror.invalid/fashion/train-images-idx3-ubyte.gz: DNS lookup failed ("
            in err)
    assert f"{closed}/train-images-idx3-ubyte.gz: connection refused (" in err
    assert not any(p.name.endswith(".gz") for p in tmp_path.iterdir())
