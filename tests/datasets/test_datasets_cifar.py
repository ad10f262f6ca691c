import io
import pickle
import re
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets_helpers import (cifar_records, no_partial_files, py2_pickle, sha256, snapshot,
                              tar_bytes)
from imgcls.datasets import load_dataset, resources
from imgcls.datasets.archive import read_members, safe_extract
from imgcls.datasets.download import RemoteFile
from imgcls.datasets.cifar import parse_binary
from imgcls.datasets.restricted_pickle import load as restricted_load
from imgcls.errors import ChecksumError, ConfigError, DatasetError, FormatError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def cifar10_binary_members(n=4):
    members, truth = {}, {"train": [], "test": []}
    for i, f in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        data, images, (labels,) = cifar_records(n, 1, seed=i)
        members[f"cifar-10-batches-bin/{f}"] = data
        truth["test" if f.startswith("test") else "train"].append((images, labels))
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    return members, truth


def cifar100_binary_members(n=6):
    members, truth = {}, {}
    for i, split in enumerate(("train", "test")):
        data, images, (coarse, fine) = cifar_records(n, 2, seed=10 + i, n_classes=(20, 100))
        members[f"cifar-100-binary/{split}.bin"] = data
        truth[split] = (images, coarse, fine)
    members["cifar-100-binary/fine_label_names.txt"] = "\n".join(
        f"fine{i}" for i in range(100)).encode()
    members["cifar-100-binary/coarse_label_names.txt"] = "\n".join(
        f"coarse{i}" for i in range(20)).encode()
    return members, truth


def write_members(root, members):
    for name, data in members.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def official(monkeypatch, name, filename, blob, alternative=False):
    table = resources.ALTERNATIVE_FILES if alternative else resources.FILES
    monkeypatch.setitem(table, name, [RemoteFile(filename, sha256(blob), len(blob))])


def _cat(parts):
    return np.concatenate(parts)


def test_cifar10_binary_folder_channel_major_records(tmp_path):
    members, truth = cifar10_binary_members()
    write_members(tmp_path, members)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.X_train.shape == (20, 32, 32, 3) and ds.X_test.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(ds.X_train, _cat([im for im, _ in truth["train"]]))
    np.testing.assert_array_equal(ds.y_train, _cat([lab for _, lab in truth["train"]]))
    np.testing.assert_array_equal(ds.y_test, truth["test"][0][1])
    assert ds.classes == CIFAR10_NAMES and ds.X_train.flags.c_contiguous


def test_channel_order_is_red_green_blue(tmp_path):
    record = bytes([7]) + bytes([200]) * 1024 + bytes([100]) * 1024 + bytes([0]) * 1024
    members, _ = cifar10_binary_members(1)
    for k in list(members):
        if k.endswith(".bin"):
            members[k] = record
    write_members(tmp_path, members)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.X_test[0, 5, 9].tolist() == [200, 100, 0] and ds.y_test.tolist() == [7]


def test_cifar10_binary_archive_is_verified_and_read_without_extracting(tmp_path, monkeypatch):
    members, truth = cifar10_binary_members()
    blob = tar_bytes(members)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(blob)
    official(monkeypatch, "cifar10", "cifar-10-binary.tar.gz", blob)
    before = snapshot(tmp_path)
    ds = load_dataset("cifar10", root=tmp_path)
    np.testing.assert_array_equal(ds.X_test, truth["test"][0][0])
    assert "SHA-256 verified" in ds.source
    assert snapshot(tmp_path) == before  # the user's folder is not written to


def test_archive_member_over_its_format_size_is_refused_on_its_header(tmp_path, monkeypatch):
    # one record more than the official test batch holds: refused from the tar
    # header, before the member's bytes are read into memory
    members, _ = cifar10_binary_members()
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_records(10001, 1)[0]
    blob = tar_bytes(members)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(blob)
    official(monkeypatch, "cifar10", "cifar-10-binary.tar.gz", blob)
    with pytest.raises(FormatError, match=r"cifar-10-binary\.tar\.gz: member .*test_batch\.bin.* "
                                          r"has 30733073 bytes, more than the 30730000"):
        load_dataset("cifar10", root=tmp_path)


def test_archive_checksum_mismatch(tmp_path):
    members, _ = cifar10_binary_members()
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(tar_bytes(members))  # not the official archive
    before = snapshot(tmp_path)
    with pytest.raises(ChecksumError, match=f"{path}.*SHA-256"):
        load_dataset("cifar10", root=tmp_path)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("label", ["fine", "coarse"])
def test_cifar100_binary_two_label_bytes(tmp_path, label):
    members, truth = cifar100_binary_members()
    write_members(tmp_path, members)
    ds = load_dataset("cifar100", root=tmp_path, label=label)
    images, coarse, fine = truth["train"]
    np.testing.assert_array_equal(ds.X_train, images)
    np.testing.assert_array_equal(ds.y_train, fine if label == "fine" else coarse)
    assert len(ds.classes) == (100 if label == "fine" else 20)
    assert ds.classes[3] == f"{label}3"


def test_cifar10_has_no_coarse_labels(tmp_path):
    with pytest.raises(ConfigError, match="label"):
        load_dataset("cifar10", root=tmp_path, label="coarse")


def test_batch_of_the_wrong_length(tmp_path):
    members, _ = cifar10_binary_members()
    members["cifar-10-batches-bin/data_batch_3.bin"] = members[
        "cifar-10-batches-bin/data_batch_3.bin"][:-5]
    write_members(tmp_path, members)
    before = snapshot(tmp_path)
    with pytest.raises(FormatError, match="data_batch_3.bin.*wrong length.*3073-byte record"):
        load_dataset("cifar10", root=tmp_path)
    assert snapshot(tmp_path) == before


def test_binary_label_out_of_range(tmp_path):
    members, _ = cifar10_binary_members(1)
    members["cifar-10-batches-bin/test_batch.bin"] = bytes([10]) + bytes(3072)
    write_members(tmp_path, members)
    with pytest.raises(FormatError, match="test_batch.bin.*label 10"):
        load_dataset("cifar10", root=tmp_path)


def test_more_records_than_the_official_file_are_refused_before_decoding(tmp_path, monkeypatch):
    from imgcls.datasets import cifar

    monkeypatch.setitem(cifar.LAYOUT["cifar10"], "max_records", {"train": 3, "test": 4})
    members, _ = cifar10_binary_members(4)  # 4 records in each training batch
    write_members(tmp_path, members)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin"
    with pytest.raises(FormatError, match=f"{path}: {4 * 3073} bytes, more than {3 * 3073} "
                                          f"\\(3 records of 3073 bytes\\)"):
        load_dataset("cifar10", root=tmp_path)
    data, _, _ = cifar_records(4, 1)
    with pytest.raises(FormatError, match="x.bin: 4 records, more than the 3 of the official"):
        cifar.parse_binary(data, "x.bin", 1, 0, 10, max_records=3)


def test_official_record_counts():
    from imgcls.datasets.cifar import LAYOUT

    assert LAYOUT["cifar10"]["max_records"] == {"train": 10000, "test": 10000}
    assert LAYOUT["cifar100"]["max_records"] == {"train": 50000, "test": 10000}


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_batch_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, kind):
    import os
    import threading

    members, _ = cifar10_binary_members()
    del members["cifar-10-batches-bin/data_batch_2.bin"]
    write_members(tmp_path, members)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    outcome = {}

    def target():
        try:
            load_dataset("cifar10", root=tmp_path)
        except Exception as exc:  # noqa: BLE001 - checked below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive() and kind == "fifo":  # unblock a reader stuck in open()
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert not thread.is_alive(), "the loader blocked"
    error = outcome.get("error")
    assert isinstance(error, DatasetError), error
    expected = "a FIFO \\(named pipe\\)" if kind == "fifo" else "a directory"
    assert re.search(f"{path}: {expected}, not a regular CIFAR file", str(error)), error


def test_parse_binary_refuses_invalid_arguments():
    data, _, _ = cifar_records(1, 1)
    with pytest.raises(ConfigError, match="label_index"):
        parse_binary(data, "x.bin", 1, 1, 10)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 3), extra=st.integers(-3, 3), label_bytes=st.sampled_from([1, 2]),
       label=st.integers(0, 255), max_records=st.sampled_from([None, 1, 2, 3]))
def test_any_binary_batch_decodes_or_raises_format_error(n, extra, label_bytes, label,
                                                         max_records):
    data = (bytes([label] * label_bytes) + bytes(range(256)) * 12) * n
    data = data[:max(0, len(data) + extra)] if extra < 0 else data + bytes(extra)
    try:
        images, labels = parse_binary(data, "x.bin", label_bytes, label_bytes - 1,
                                                 100)
    except FormatError as exc:
        assert str(exc).startswith("x.bin: ")
        return
    assert images.shape == (n, 32, 32, 3) and labels.tolist() == [label] * n


def test_python_batch_label_too_large_for_int64(tmp_path):
    members, _ = cifar10_python_members()
    members["cifar-10-batches-py/data_batch_4"] = py2_pickle(
        {b"labels": [0, 1], b"data": np.zeros((2, 3072), np.uint8)}).replace(
        b"K\x01", b"\x8a\x09" + (2**70).to_bytes(9, "little"), 1)
    write_members(tmp_path, members)
    with pytest.raises(FormatError, match="data_batch_4.*labels outside 0..9"):
        load_dataset("cifar10", root=tmp_path)


def test_python_batch_with_more_images_than_the_official_file(tmp_path):
    from imgcls.datasets.cifar import parse_python_batch

    blob = py2_pickle({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(FormatError, match="x: 3 images, more than the 2 of the official file"):
        parse_python_batch(blob, "x", "labels", 10, max_records=2)
    assert parse_python_batch(blob, "x", "labels", 10, max_records=3)[1].tolist() == [0, 1, 2]


def test_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="download=True"):
        load_dataset("cifar100", root=tmp_path)
    members, _ = cifar10_binary_members()
    del members["cifar-10-batches-bin/data_batch_2.bin"]
    write_members(tmp_path, members)
    with pytest.raises(DatasetError, match="data_batch_2.bin"):
        load_dataset("cifar10", root=tmp_path)


# --- python release ---

def cifar10_python_members(n=3):
    members, truth = {}, {"train": [], "test": []}
    for i, f in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        _, images, (labels,) = cifar_records(n, 1, seed=20 + i)
        data = images.transpose(0, 3, 1, 2).reshape(n, 3072)
        members[f"cifar-10-batches-py/{f}"] = py2_pickle({
            b"batch_label": f"batch {f}".encode(), b"labels": labels.tolist(), b"data": data,
            b"filenames": [f"img_{j}.png".encode() for j in range(n)]})
        truth["test" if f.startswith("test") else "train"].append((images, labels))
    members["cifar-10-batches-py/batches.meta"] = py2_pickle({
        b"num_cases_per_batch": 10000, b"label_names": [s.encode() for s in CIFAR10_NAMES],
        b"num_vis": 3072})
    return members, truth


def test_python_release_folder(tmp_path):
    members, truth = cifar10_python_members()
    write_members(tmp_path, members)
    ds = load_dataset("cifar10", root=tmp_path)
    np.testing.assert_array_equal(ds.X_train, _cat([im for im, _ in truth["train"]]))
    np.testing.assert_array_equal(ds.y_test, truth["test"][0][1])
    assert ds.classes == CIFAR10_NAMES and "python release" in ds.source


def test_python_release_archive(tmp_path, monkeypatch):
    members, truth = cifar10_python_members()
    blob = tar_bytes(members)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(blob)
    official(monkeypatch, "cifar10", "cifar-10-python.tar.gz", blob, alternative=True)
    ds = load_dataset("cifar10", root=tmp_path)
    np.testing.assert_array_equal(ds.X_test, truth["test"][0][0])


def test_cifar100_python_release_coarse(tmp_path):
    _, images, (coarse, fine) = cifar_records(4, 2, seed=3, n_classes=(20, 100))
    data = images.transpose(0, 3, 1, 2).reshape(4, 3072)
    batch = {b"filenames": [b"a", b"b", b"c", b"d"], b"batch_label": b"x",
             b"fine_labels": fine.tolist(), b"coarse_labels": coarse.tolist(), b"data": data}
    members = {"cifar-100-python/train": py2_pickle(batch), "cifar-100-python/test": py2_pickle(batch),
               "cifar-100-python/meta": py2_pickle({
                   b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                   b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})}
    write_members(tmp_path, members)
    ds = load_dataset("cifar100", root=tmp_path, label="coarse")
    np.testing.assert_array_equal(ds.y_train, coarse)
    np.testing.assert_array_equal(ds.X_test, images)
    assert ds.classes[:2] == ["c0", "c1"]


def test_python3_pickles_of_the_same_data_are_read(tmp_path):
    members, truth = cifar10_python_members()
    _, images, (labels,) = cifar_records(3, 1, seed=99)
    for proto in (2, 3, 4):
        blob = pickle.dumps({"data": images.transpose(0, 3, 1, 2).reshape(3, 3072),
                             "labels": labels.tolist()}, protocol=proto)
        out = restricted_load(blob, "x")
        np.testing.assert_array_equal(out["data"].reshape(3, 3, 32, 32).transpose(0, 2, 3, 1),
                                      images)


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned > /tmp/imgcls-pwned",))


class _Obj:
    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("payload, msg", [
    (pickle.dumps({"data": _Evil()}, protocol=2), "global 'posix system' is not allowed"),
    (pickle.dumps(_Obj(), protocol=2), "global '.*_Obj' is not allowed"),
    (pickle.dumps({"data": {1, 2}}, protocol=4), "opcode EMPTY_SET is not allowed"),
    (pickle.dumps(np.zeros(3, dtype=object), protocol=2), "not a plain numeric dtype"),
    (pickle.dumps([eval], protocol=2), "global '(__builtin__|builtins) eval' is not allowed"),
    (b"cos\nsystem\n(S'echo hi'\ntR.", "global 'os system' is not allowed"),
    (pickle.dumps({"a": 1}, protocol=2)[:-3], "truncated pickle|corrupt or truncated"),
])
def test_restricted_reader_refuses_anything_but_data(payload, msg, tmp_path):
    with pytest.raises(FormatError, match=msg):
        restricted_load(payload, tmp_path / "data_batch_1")


def test_cyclic_structure_is_refused():
    lst = []
    lst.append(lst)
    with pytest.raises(FormatError, match="nesting"):
        restricted_load(pickle.dumps(lst, protocol=2), "x")


@pytest.mark.parametrize("entries, msg", [
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"extra": 5},
     "unexpected entries \\['extra'\\]"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "uint8 array \\(n, 3072\\)"),
    ({b"data": [1, 2], b"labels": [0, 1]}, "'data' must be a uint8 array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"a", b"b"]}, "list of ints"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "outside 0..9"),
])
def test_python_batch_holding_unexpected_content(tmp_path, entries, msg):
    members, _ = cifar10_python_members()
    members["cifar-10-batches-py/data_batch_4"] = py2_pickle(entries)
    write_members(tmp_path, members)
    before = snapshot(tmp_path)
    with pytest.raises(FormatError, match=f"data_batch_4.*{msg}"):
        load_dataset("cifar10", root=tmp_path)
    assert snapshot(tmp_path) == before


def test_malicious_batch_inside_the_folder_is_refused_and_never_run(tmp_path):
    members, _ = cifar10_python_members()
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(_Evil(), protocol=2)
    write_members(tmp_path, members)
    with pytest.raises(FormatError, match="test_batch.*not allowed"):
        load_dataset("cifar10", root=tmp_path)
    assert not (tmp_path / "imgcls-pwned").exists()


# --- downloads and archive safety ---

def test_download_verifies_then_extracts_into_the_cache(http_server, monkeypatch,
                                                        isolated_cache):
    members, truth = cifar100_binary_members()
    blob = tar_bytes(members)
    http_server.files["cifar-100-binary.tar.gz"] = blob
    official(monkeypatch, "cifar100", "cifar-100-binary.tar.gz", blob)
    monkeypatch.setitem(resources.MIRRORS, "cifar100",
                        [http_server.url("bad"), http_server.url("good")])
    ds = load_dataset("cifar100", download=True)
    np.testing.assert_array_equal(ds.X_test, truth["test"][0])
    folder = isolated_cache / "cifar100"
    assert (folder / "cifar-100-binary" / "train.bin").is_file()
    assert (folder / "cifar-100-binary.tar.gz").is_file() and no_partial_files(folder)
    assert "extracted binary release" in load_dataset("cifar100").source


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-bin/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buf.getvalue()


def _info(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("member, msg", [
    (_info("/etc/evil"), "absolute path"),
    (_info("cifar-10-batches-bin/../../evil"), "contains '..'"),
    (_info("cifar-10-batches-bin/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_info("cifar-10-batches-bin/hard", tarfile.LNKTYPE, "cifar-10-batches-bin/ok.txt"),
     "is a link"),
    (_info("cifar-10-batches-bin/dev", tarfile.CHRTYPE), "device or FIFO"),
    (_info("cifar-10-batches-bin/blk", tarfile.BLKTYPE), "device or FIFO"),
    (_info("cifar-10-batches-bin/fifo", tarfile.FIFOTYPE), "device or FIFO"),
])
def test_unsafe_archive_members_reject_the_whole_archive(tmp_path, member, msg):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar_with(member, b"x" if member.isfile() else b""))
    dest = tmp_path / "out"
    with pytest.raises(FormatError, match=f"{archive}.*{msg}"):
        safe_extract(archive, dest)
    assert not dest.exists()  # as before: nothing extracted, no temporary folder left
    with pytest.raises(FormatError, match=msg):
        read_members(archive, ["cifar-10-batches-bin/ok.txt"])


def test_unsafe_member_in_a_downloaded_archive_leaves_no_extraction(http_server, monkeypatch,
                                                                   isolated_cache):
    blob = _tar_with(_info("cifar-10-batches-bin/../../../escape"), b"x")
    http_server.files["cifar-10-binary.tar.gz"] = blob
    official(monkeypatch, "cifar10", "cifar-10-binary.tar.gz", blob)
    with pytest.raises(FormatError, match="contains '..'"):
        load_dataset("cifar10", download=True, mirrors=[http_server.url("good")])
    folder = isolated_cache / "cifar10"
    assert sorted(p.name for p in folder.iterdir()) == ["cifar-10-binary.tar.gz"]
    assert not (isolated_cache / "escape").exists() and not (isolated_cache.parent / "escape").exists()


def test_truncated_archive(tmp_path, monkeypatch):
    members, _ = cifar10_binary_members()
    blob = tar_bytes(members)[:5000]
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(blob)
    official(monkeypatch, "cifar10", path.name, blob)
    with pytest.raises(FormatError, match=f"{path}.*(corrupt or truncated|lacks)"):
        load_dataset("cifar10", root=tmp_path)
    dest = tmp_path / "x"
    with pytest.raises(FormatError, match=str(path)):
        safe_extract(path, dest)
    assert not dest.exists()


def test_safe_extract_good_archive(tmp_path):
    members, _ = cifar10_binary_members(1)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_bytes(members))
    created = safe_extract(archive, tmp_path / "out")
    assert [p.name for p in created] == ["cifar-10-batches-bin"]
    assert (tmp_path / "out/cifar-10-batches-bin/test_batch.bin").read_bytes() == members[
        "cifar-10-batches-bin/test_batch.bin"]
