import os

import pytest

from imgcls.datasets import cache_dir, download, locations
from imgcls.datasets.locations import find_file, resolve_root


def test_cache_dir_has_one_definition_re_exported():
    assert cache_dir is locations.cache_dir is download.cache_dir
    assert download.ENV_VAR == locations.ENV_VAR == "IMGCLS_DATA"


def test_resolve_root_prefers_the_given_root(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGCLS_DATA", str(tmp_path / "env"))
    assert resolve_root("mnist", None) == tmp_path / "env" / "mnist"
    assert resolve_root("mnist", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root("cifar10", "~/data") == tmp_path / "home" / "data"


@pytest.mark.parametrize("present, found", [
    (["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"], "train-images-idx3-ubyte.gz"),
    (["train-images-idx3-ubyte", "train-images.idx3-ubyte.gz"], "train-images-idx3-ubyte"),
    (["train-images.idx3-ubyte.gz", "train-images.idx3-ubyte"], "train-images.idx3-ubyte.gz"),
    (["train-images.idx3-ubyte"], "train-images.idx3-ubyte"),
    ([], None),
])
def test_find_file_takes_the_first_spelling(tmp_path, present, found):
    for name in present:
        (tmp_path / name).write_bytes(b"x")
    got = find_file(tmp_path, "train-images-idx3-ubyte")
    assert got == (tmp_path / found if found else None)


def test_find_file_ignores_folders_and_fifos(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").mkdir()
    os.mkfifo(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "train-images.idx3-ubyte").write_bytes(b"x")
    assert find_file(tmp_path, "train-images-idx3-ubyte") == tmp_path / "train-images.idx3-ubyte"
