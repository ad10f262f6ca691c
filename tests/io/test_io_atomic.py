"""Atomic writes keep what the user set up: symlinks stay links, permissions stay private."""

from __future__ import annotations

import os
import stat

import pytest
from io_helpers import REGISTRY, Centroid, data

from imgcls.io import load, save, write_bytes_atomic, write_files_atomic

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and symlinks")


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_save_through_a_symlink_writes_the_target(tmp_path, fitted):
    model, _ = fitted
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    target = real_dir / "model.safetensors"
    save(model, target, registry=REGISTRY)
    link = tmp_path / "current.safetensors"
    link.symlink_to(target)
    save(Centroid(shrink=1.0).fit(*data(seed=3)), link, registry=REGISTRY)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert load(target, registry=REGISTRY).shrink == 1.0
    # the temporary file lived next to the target, and is gone
    assert sorted(p.name for p in real_dir.iterdir()) == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.safetensors", "store"]


def test_relative_and_chained_symlinks(tmp_path):
    (tmp_path / "a").mkdir()
    target = tmp_path / "a" / "data.bin"
    target.write_bytes(b"old")
    (tmp_path / "hop").symlink_to("a/data.bin")          # relative
    (tmp_path / "link").symlink_to(tmp_path / "hop")      # a link to a link
    write_bytes_atomic(tmp_path / "link", b"new")
    assert target.read_bytes() == b"new"
    assert (tmp_path / "link").is_symlink() and (tmp_path / "hop").is_symlink()


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "made.bin")
    write_bytes_atomic(link, b"x")
    assert link.is_symlink() and (tmp_path / "made.bin").read_bytes() == b"x"


def test_symlink_loop_is_an_oserror(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="link"):
        write_bytes_atomic(tmp_path / "a", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o755])
def test_overwrite_keeps_the_permission_bits(tmp_path, fitted, mode):
    model, _ = fitted
    path = save(model, tmp_path / "private.safetensors", registry=REGISTRY)
    os.chmod(path, mode)
    save(model, path, registry=REGISTRY)
    assert _mode(path) == mode
    write_bytes_atomic(path, b"x")
    assert _mode(path) == mode


def test_overwrite_through_a_link_keeps_the_target_mode(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = tmp_path / "l.bin"
    link.symlink_to(target)
    write_bytes_atomic(link, b"new")
    assert _mode(target) == 0o600 and target.read_bytes() == b"new"


def test_setuid_bits_are_not_carried_over(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o4755)
    write_bytes_atomic(path, b"new")
    assert _mode(path) == 0o755


def test_new_files_follow_the_umask(tmp_path):
    write_bytes_atomic(tmp_path / "new.bin", b"x")
    assert _mode(tmp_path / "new.bin") == 0o666 & ~_umask()


def test_write_files_atomic_keeps_modes_and_links(tmp_path):
    private = tmp_path / "results.json"
    private.write_bytes(b"{}")
    os.chmod(private, 0o600)
    real = tmp_path / "real.html"
    real.write_bytes(b"old")
    (tmp_path / "report.html").symlink_to(real)
    write_files_atomic({private: b"[1]", tmp_path / "report.html": b"<p>", tmp_path / "n": b"n"})
    assert _mode(private) == 0o600 and private.read_bytes() == b"[1]"
    assert (tmp_path / "report.html").is_symlink() and real.read_bytes() == b"<p>"
    assert _mode(tmp_path / "n") == 0o666 & ~_umask()
