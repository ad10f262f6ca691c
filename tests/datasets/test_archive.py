"""Tar extraction is all or nothing and bounded; reading members is bounded."""

import io
import os
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fifo_helpers import unblock_fifos  # noqa: F401  (a fixture)
from imgcls.datasets import archive as archive_module
from imgcls.datasets.archive import read_members, safe_extract
from imgcls.errors import DatasetError, FormatError


def tree(folder):
    """Every entry under ``folder``: kind and content (files), to prove nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir",)
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", f.read())
    return out


def make_tar(entries, mode="w:gz", pax=None):
    """``entries``: name -> bytes (a file) or None (a folder)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                if pax:
                    info.pax_headers = dict(pax)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = {"a_dir": None, "a_dir/x.bin": b"new x", "b_dir": None, "b_dir/y.bin": b"new y",
           "c.txt": b"new c"}


@pytest.fixture
def populated(tmp_path):
    """A destination that already holds entries the archive replaces, and others."""
    src = tmp_path / "data.tar.gz"
    src.write_bytes(make_tar(ARCHIVE))
    dest = tmp_path / "dest"
    (dest / "a_dir").mkdir(parents=True)
    (dest / "a_dir" / "old.bin").write_bytes(b"old")
    (dest / "b_dir").write_bytes(b"a file where the archive has a folder")
    (dest / "keep.txt").write_bytes(b"not in the archive")
    return src, dest


def test_existing_entries_are_replaced_whole(populated):
    src, dest = populated
    created = safe_extract(src, dest)
    assert [p.name for p in created] == ["a_dir", "b_dir", "c.txt"]
    assert tree(dest) == {"a_dir": ("dir",), "a_dir/x.bin": ("file", b"new x"),
                          "b_dir": ("dir",), "b_dir/y.bin": ("file", b"new y"),
                          "c.txt": ("file", b"new c"),
                          "keep.txt": ("file", b"not in the archive")}


@pytest.mark.parametrize("fail_at", range(5))
def test_a_failure_part_way_leaves_the_destination_exactly_as_before(populated, monkeypatch,
                                                                     fail_at):
    # 2 entries moved aside, 3 moved in: fail at each of the 5 renames in turn.
    src, dest = populated
    before = tree(dest)
    calls, real = [], os.rename

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == fail_at + 1:
            raise OSError(28, "No space left on device")
        real(a, b)

    monkeypatch.setattr(archive_module, "_rename", rename)
    with pytest.raises(DatasetError, match=rf"{dest}: cannot move .*No space left.*nothing was "
                                           r"changed"):
        safe_extract(src, dest)
    assert tree(dest) == before  # no temporary folder either


def test_a_bad_member_late_in_the_archive_changes_nothing(populated):
    src, dest = populated
    entries = dict(ARCHIVE)
    entries["z/../../escape"] = b"x"
    src.write_bytes(make_tar(entries))
    before = tree(dest)
    with pytest.raises(FormatError, match=rf"{src}: member 'z/\.\./\.\./escape' contains '\.\.'"):
        safe_extract(src, dest)
    assert tree(dest) == before
    noise = bytes(range(256)) * 40 + bytes(reversed(range(256))) * 40  # compresses little
    blob = make_tar({**ARCHIVE, "d.bin": bytes(a ^ b for a, b in zip(noise, noise[7:]))})
    src.write_bytes(blob[:len(blob) // 2])  # truncated inside the last member
    with pytest.raises(FormatError, match=rf"{src}: corrupt or truncated"):
        safe_extract(src, dest)
    assert tree(dest) == before


def test_a_new_destination_is_created_whole_or_not_at_all(tmp_path):
    src = tmp_path / "data.tar"
    src.write_bytes(make_tar(ARCHIVE, mode="w"))
    dest = tmp_path / "new" / "deeper"
    src_bad = tmp_path / "bad.tar"
    src_bad.write_bytes(make_tar({**ARCHIVE, "/abs": b"x"}, mode="w"))
    with pytest.raises(FormatError, match="absolute path"):
        safe_extract(src_bad, dest)
    assert not (tmp_path / "new").exists()
    assert [p.name for p in safe_extract(src, dest)] == ["a_dir", "b_dir", "c.txt"]
    assert sorted(tree(tmp_path / "new")) == ["deeper", "deeper/a_dir", "deeper/a_dir/x.bin",
                                              "deeper/b_dir", "deeper/b_dir/y.bin",
                                              "deeper/c.txt"]


def test_destination_that_is_a_file(tmp_path):
    src = tmp_path / "data.tar.gz"
    src.write_bytes(make_tar(ARCHIVE))
    (tmp_path / "dest").write_bytes(b"x")
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'dest'}: not a folder"):
        safe_extract(src, tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == b"x"


def test_a_member_may_not_replace_the_archive_itself(tmp_path):
    src = tmp_path / "data.tar"
    blob = make_tar({"data.tar": b"overwrite"}, mode="w")
    src.write_bytes(blob)
    with pytest.raises(FormatError, match="would replace the archive itself"):
        safe_extract(src, tmp_path)
    assert src.read_bytes() == blob and sorted(os.listdir(tmp_path)) == ["data.tar"]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_every_compression_reads_and_extracts(tmp_path, mode):
    src = tmp_path / "data.tar"
    src.write_bytes(make_tar(ARCHIVE, mode=mode))
    assert read_members(src, ["b_dir/y.bin", "c.txt", "missing"]) == {"b_dir/y.bin": b"new y",
                                                                    "c.txt": b"new c"}
    safe_extract(src, tmp_path / "out")
    assert (tmp_path / "out" / "a_dir" / "x.bin").read_bytes() == b"new x"


# --- caps ----------------------------------------------------------------------------


def _header_only(name, size):
    """A gzipped tar whose one member claims ``size`` bytes and holds none."""
    import gzip

    info = tarfile.TarInfo(name)
    info.size = size
    return gzip.compress(info.tobuf())


@pytest.mark.parametrize("reader", ["extract", "read"])
def test_a_member_over_the_cap_is_refused_from_its_header(tmp_path, reader):
    src = tmp_path / "bomb.tar.gz"
    src.write_bytes(_header_only("huge.bin", archive_module.MAX_MEMBER_BYTES + 1))
    with pytest.raises(FormatError, match=rf"{src}: member 'huge\.bin' has 268435457 bytes, "
                                          r"over MAX_MEMBER_BYTES=268435456"):
        if reader == "extract":
            safe_extract(src, tmp_path / "out")
        else:
            read_members(src, ["huge.bin"])
    assert not (tmp_path / "out").exists()


def _sparse_member_with_a_huge_stored_size():
    # A GNU sparse header reports its expanded size (0 here) as ``size``, while its
    # stored size (2**62, base-256 encoded) moves the position of the next header.
    info = tarfile.TarInfo("sparse.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 2 ** 62
    return info.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024)


@pytest.mark.parametrize("reader", ["extract", "read"])
@pytest.mark.parametrize("sparse_check", [True, False])
def test_a_member_moving_the_next_header_out_of_reach_is_refused(tmp_path, monkeypatch,
                                                                 reader, sparse_check):
    # tarfile's stream reader seeks forward by reading, with no end-of-data check:
    # without a bound this spins for ever.  Both guards are tested: the refusal of
    # sparse members, and (with that one disabled) the bound on the next header.
    import threading

    if not sparse_check:
        monkeypatch.setattr(tarfile.TarInfo, "issparse", lambda self: False)
    src = tmp_path / "sparse.tar"
    src.write_bytes(_sparse_member_with_a_huge_stored_size())
    outcome = {}

    def target():
        try:
            if reader == "extract":
                safe_extract(src, tmp_path / "out")
            else:
                read_members(src, ["sparse.bin"])
        except Exception as exc:  # noqa: BLE001 - judged below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "reading the archive did not finish within 10 s"
    assert isinstance(outcome.get("error"), FormatError), outcome
    assert str(outcome["error"]).startswith(f"{src}: member 'sparse.bin' ")
    assert not (tmp_path / "out").exists()


def test_a_wanted_member_over_its_own_limit_is_not_read(tmp_path):
    src = tmp_path / "a.tar.gz"
    src.write_bytes(make_tar(ARCHIVE))
    with pytest.raises(FormatError, match=r"member 'c\.txt' has 5 bytes, more than the 4 its "
                                          r"format allows"):
        read_members(src, ["c.txt"], max_sizes={"c.txt": 4})
    assert read_members(src, ["c.txt"], max_sizes={"c.txt": 5}) == {"c.txt": b"new c"}


@pytest.mark.parametrize("reader", ["extract", "read"])
def test_total_members_and_stream_caps(tmp_path, monkeypatch, reader):
    def run(blob):
        src = tmp_path / "a.tar.gz"
        src.write_bytes(blob)
        if reader == "extract":
            safe_extract(src, tmp_path / "out")
        else:
            read_members(src, ["f0"])

    monkeypatch.setattr(archive_module, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(FormatError, match="more than MAX_TOTAL_BYTES=1000 bytes"):
        run(make_tar({f"f{i}": b"x" * 400 for i in range(3)}))
    monkeypatch.setattr(archive_module, "MAX_MEMBERS", 3)
    with pytest.raises(FormatError, match=r"more than 3 members \(MAX_MEMBERS\)"):
        run(make_tar({f"f{i}": b"" for i in range(4)}))
    # A pax header is not a member, yet decompressed: the stream itself is capped.
    monkeypatch.setattr(archive_module, "MAX_HEADER_BYTES", 2000)
    with pytest.raises(FormatError, match="decompresses to more than 3000 bytes"):
        run(make_tar({"f0": b"x"}, pax={"comment": "y" * 50_000}))
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_archive_is_refused_without_waiting(tmp_path, unblock_fifos):
    fifo = tmp_path / "a.tar.gz"
    os.mkfifo(fifo)
    unblock_fifos.append(fifo)
    with pytest.raises(FormatError, match=rf"{fifo}: a FIFO \(named pipe\), not a regular archive"):
        read_members(fifo, ["x"])
    with pytest.raises(FormatError, match=rf"{fifo}: a FIFO"):
        safe_extract(fifo, tmp_path / "out")


# --- property: success is the documented result, failure changes nothing ---------------

_NAMES = st.sampled_from(["a", "b", "c"])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=st.dictionaries(_NAMES, st.one_of(st.none(), st.binary(max_size=8)), min_size=1),
       existing=st.dictionaries(_NAMES, st.sampled_from(["file", "dir", "link"])),
       fail_at=st.one_of(st.none(), st.integers(0, 6)), bad_last=st.booleans())
def test_extraction_is_all_or_nothing(tmp_path_factory, monkeypatch, top, existing, fail_at,
                                      bad_last):
    base = tmp_path_factory.mktemp("x")
    dest = base / "dest"
    dest.mkdir()
    (dest / "other").write_bytes(b"untouched")
    for name, kind in existing.items():
        if kind == "file":
            (dest / name).write_bytes(b"old")
        elif kind == "dir":
            (dest / name / "inner").mkdir(parents=True)
        else:
            (dest / name).symlink_to(base)
    entries = {}
    for name, data in top.items():
        if data is None:
            entries[name] = None
            entries[f"{name}/f"] = b"in " + name.encode()
        else:
            entries[name] = data
    if bad_last:
        entries["d/../../up"] = b"x"
    src = base / "a.tar.gz"
    src.write_bytes(make_tar(entries))
    before = tree(dest)
    calls, real = [], os.rename

    def rename(a, b):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at + 1:
            raise OSError(5, "I/O error")
        real(a, b)

    monkeypatch.setattr(archive_module, "_rename", rename)
    try:
        created = safe_extract(src, dest)
    except (FormatError, DatasetError):
        assert tree(dest) == before
        assert bad_last or fail_at is not None
        return
    assert not bad_last
    assert [p.name for p in created] == sorted(top)
    after = tree(dest)
    assert after["other"] == ("file", b"untouched")
    for name, data in top.items():
        assert after[name] == (("dir",) if data is None else ("file", data))
    assert set(after) == {"other", *top} | {f"{n}/f" for n, d in top.items() if d is None} \
        | {k for k in before if k.split("/")[0] not in top}
