"""The static data set table: order, lazy imports, and what each entry points at.

Import-order facts are checked in a fresh interpreter, since the test session
itself has long since imported every loader.
"""

import importlib
import subprocess
import sys
import textwrap

import pytest

from imgcls.datasets import base, dataset_info, list_datasets
from imgcls.errors import ConfigError

EXPECTED_ORDER = ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "folder:PATH",
                  "npz:PATH", "features:PATH"]
LOADER_MODULES = ["imgcls.datasets.digits", "imgcls.datasets.mnist", "imgcls.datasets.cifar",
                  "imgcls.datasets.folder", "imgcls.datasets.arrays", "imgcls.datasets._decode",
                  "imgcls.datasets.features"]


def _fresh(code: str) -> None:
    """Run ``code`` in a new interpreter; fail with its stderr when it fails."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_importing_the_package_and_reading_the_table_imports_no_loader():
    _fresh(f"""
        import sys
        import imgcls.datasets as d
        loaders = {LOADER_MODULES!r}
        imported = [m for m in loaders if m in sys.modules]
        assert not imported, imported
        assert d.list_datasets() == {EXPECTED_ORDER!r}
        for name in ("digits", "mnist", "cifar100", "folder:/x", "npz:/x"):
            d.dataset_info(name)
        from imgcls.datasets.base import get_spec
        get_spec("fashion-mnist")
        imported = [m for m in loaders if m in sys.modules]
        assert not imported, imported
        assert "PIL" not in sys.modules
    """)


def test_digits_loads_without_pillow_or_other_loaders():
    _fresh("""
        import sys
        from imgcls.datasets import load_dataset
        ds = load_dataset("digits")
        assert ds.X_train.shape == (1437, 8, 8, 1)
        assert "PIL" not in sys.modules, "loading digits imported Pillow"
        others = [m for m in ("imgcls.datasets.mnist", "imgcls.datasets.cifar",
                              "imgcls.datasets.folder", "imgcls.datasets.arrays")
                  if m in sys.modules]
        assert not others, others
    """)


def test_list_order_does_not_depend_on_which_loader_was_imported_first():
    # Self-registering loaders listed themselves in import order: importing
    # arrays then folder first put npz:PATH at the head of the list.
    _fresh(f"""
        import imgcls.datasets.arrays, imgcls.datasets.folder, imgcls.datasets.cifar
        from imgcls.datasets import list_datasets
        assert list_datasets() == {EXPECTED_ORDER!r}, list_datasets()
    """)


@pytest.mark.parametrize("module", ["digits", "mnist", "cifar", "folder", "arrays", "base",
                                    "locations", "verify"])
def test_every_module_imports_first_in_a_fresh_interpreter(module):
    # An import cycle shows up as an ImportError when a module is imported first.
    _fresh(f"import imgcls.datasets.{module}")


def test_every_entry_points_at_a_callable_loader():
    for spec in base.DATASETS.values():
        loader = getattr(importlib.import_module(spec.module), spec.loader)
        assert callable(loader), spec
        assert spec.load() is loader


def test_table_order_is_the_listed_order():
    assert list_datasets() == EXPECTED_ORDER
    assert [f"{n}:PATH" if s.prefix else n for n, s in base.DATASETS.items()] == EXPECTED_ORDER


@pytest.mark.parametrize("name, downloadable", [("digits", False), ("mnist", True),
                                                ("fashion-mnist", True), ("cifar10", True),
                                                ("cifar100", True), ("folder:/data", False),
                                                ("npz:/data/x.npz", False)])
def test_dataset_info_is_static(name, downloadable):
    info = dataset_info(name)
    assert info["downloadable"] is downloadable
    assert info["name"] == name.partition(":")[0]
    assert isinstance(info["description"], str) and info["description"]


@pytest.mark.parametrize("name", ["Digits", "MNIST", "Folder:/x", "NPZ:/x"])
def test_names_are_case_insensitive(name):
    spec, path = base.get_spec(name)
    assert spec.name == name.partition(":")[0].lower()
    assert path == (name.partition(":")[2] or None)


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ConfigError, match="known: digits, mnist, fashion-mnist"):
        base.get_spec("imagenet")
