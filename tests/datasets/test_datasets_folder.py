import importlib
import sys

import numpy as np
import pytest
from PIL import Image

from datasets_helpers import snapshot
from imgcls.datasets import load_dataset
from imgcls.errors import ConfigError, DatasetError, ImageError

FORMATS = {"png": "PNG", "bmp": "BMP", "gif": "GIF", "webp": "WEBP", "jpg": "JPEG"}


def save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    kwargs = {"lossless": True} if (fmt or "").upper() == "WEBP" else {}
    image.save(path, format=fmt, **kwargs)
    return path


def grey(value, size=(6, 5)):
    return np.full(size, value, np.uint8)


def make_tree(root, classes=("cat", "dog"), per_class=5, size=(6, 5), ext="png"):
    truth = {}
    for c, cls in enumerate(classes):
        for i in range(per_class):
            value = 40 * c + i
            save(root / cls / f"{i:03d}.{ext}", grey(value, size))
            truth[str(root / cls / f"{i:03d}.{ext}")] = value
    return truth


def test_train_test_layout_every_format_and_hidden_files_ignored(tmp_path):
    rgb = np.zeros((4, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 120, 250
    for split in ("train", "test"):
        for ext, fmt in FORMATS.items():
            if ext in ("gif", "jpg"):  # palette / lossy: grey values survive exactly enough
                save(tmp_path / split / "b_grey" / f"x.{ext}", grey(128, (4, 3)), fmt)
            else:
                save(tmp_path / split / "a_rgb" / f"x.{ext}", rgb, fmt)
    (tmp_path / "train" / "a_rgb" / ".DS_Store").write_bytes(b"\x00\x01junk")
    save(tmp_path / "train" / ".ipynb_checkpoints" / "x.png", grey(1, (9, 9)))
    save(tmp_path / "train" / "a_rgb" / ".hidden.png", grey(1, (9, 9)))
    (tmp_path / "train" / "a_rgb" / "notes.txt").write_text("not an image")
    before = snapshot(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.classes == ["a_rgb", "b_grey"]
    assert ds.X_train.shape == (5, 4, 3, 3) and ds.X_test.shape == (5, 4, 3, 3)
    assert ds.X_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1]
    for k in range(3):  # bmp, png, webp (lossless): exact RGB
        assert ds.X_train[k, 2, 1].tolist() == [10, 120, 250]
    assert np.abs(ds.X_train[3:].astype(int) - 128).max() <= 2  # gif, jpeg
    assert "train/test folders" in ds.source and ds.skipped == []
    assert snapshot(tmp_path) == before


def test_class_layout_gets_a_seeded_stratified_split(tmp_path):
    make_tree(tmp_path, classes=("a", "b", "c"), per_class=10)
    ds = load_dataset(f"folder:{tmp_path}", mode="L", test_size=0.3, seed=1)
    assert ds.X_train.shape == (21, 6, 5, 1) and ds.X_test.shape == (9, 6, 5, 1)
    assert np.bincount(ds.y_test).tolist() == [3, 3, 3]
    again = load_dataset(f"folder:{tmp_path}", mode="L", test_size=0.3, seed=1, n_jobs=1)
    np.testing.assert_array_equal(ds.X_test, again.X_test)
    other = load_dataset(f"folder:{tmp_path}", mode="L", test_size=0.3, seed=2)
    assert not np.array_equal(ds.X_test, other.X_test)
    # labels agree with the pixel values written per class (40 * class + i)
    assert ((ds.X_train[:, 0, 0, 0] // 40) == ds.y_train).all()


def test_train_folder_alone_is_split_not_taken_as_one_class(tmp_path):
    # e.g. the CIFAR-10 training JPEGs unpack to train/<class>/ with no test/
    make_tree(tmp_path / "train", classes=("a", "b"), per_class=10)
    ds = load_dataset(f"folder:{tmp_path}", mode="L", test_size=0.3, seed=1)
    assert ds.classes == ["a", "b"]
    assert ds.X_train.shape == (14, 6, 5, 1) and np.bincount(ds.y_test).tolist() == [3, 3]
    same = load_dataset(f"folder:{tmp_path / 'train'}", mode="L", test_size=0.3, seed=1)
    np.testing.assert_array_equal(ds.X_test, same.X_test)


def test_nested_images_inside_a_class_folder_count(tmp_path):
    make_tree(tmp_path, per_class=3)
    save(tmp_path / "cat" / "more" / "deep.png", grey(7))
    ds = load_dataset(f"folder:{tmp_path}", test_size=0.25)
    assert len(ds.y_train) + len(ds.y_test) == 7


def test_mixed_sizes_without_image_size_name_two_files(tmp_path):
    make_tree(tmp_path, per_class=3)
    odd = save(tmp_path / "dog" / "big.png", grey(9, (10, 12)))
    with pytest.raises(DatasetError, match=r"different sizes.*cat/00\d\.png is 5x6 .*big\.png is 12x10"):
        load_dataset(f"folder:{tmp_path}")
    ds = load_dataset(f"folder:{tmp_path}", image_size=(8, 7), mode="L", test_size=0.25)
    assert ds.X_train.shape[1:] == (8, 7, 1)
    assert odd.exists()


def test_different_sizes_between_train_and_test(tmp_path):
    make_tree(tmp_path / "train", per_class=2, size=(4, 4))
    make_tree(tmp_path / "test", per_class=2, size=(5, 5))
    with pytest.raises(DatasetError, match=r"different sizes.*train.*000\.png is 4x4 .*test.*000\.png is 5x5"):
        load_dataset(f"folder:{tmp_path}")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_image_raises_naming_the_file(tmp_path):
    make_tree(tmp_path, per_class=4, size=(40, 40))
    bad = tmp_path / "dog" / "002.png"
    save(bad, np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8))
    _truncate(bad)
    before = snapshot(tmp_path)
    with pytest.raises(ImageError, match=f"{bad}.*truncated.*on_error='skip'"):
        load_dataset(f"folder:{tmp_path}")
    assert snapshot(tmp_path) == before


def test_skip_lists_every_bad_file_with_its_reason(tmp_path):
    make_tree(tmp_path, per_class=5)
    bad1 = tmp_path / "cat" / "001.png"
    _truncate(bad1)
    bad2 = tmp_path / "dog" / "zz.jpg"
    bad2.write_bytes(b"<html>not an image</html>")
    ds = load_dataset(f"folder:{tmp_path}", on_error="skip", test_size=0.25)
    assert len(ds.y_train) + len(ds.y_test) == 9
    assert sorted(p for p, _ in ds.skipped) == [str(bad1), str(bad2)]
    reasons = dict(ds.skipped)
    assert "corrupt or truncated" in reasons[str(bad1)]
    assert "not in a format imgcls reads" in reasons[str(bad2)]
    assert "2 skipped" in ds.source and ds.summary()["n_skipped"] == 2


def test_all_images_of_a_class_skipped_is_an_error(tmp_path):
    make_tree(tmp_path, per_class=3)
    for p in (tmp_path / "dog").iterdir():
        p.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no readable image left.*dog"):
        load_dataset(f"folder:{tmp_path}", on_error="skip")


def test_image_over_the_pixel_limit(tmp_path):
    from PIL import Image as PILImage

    limit_before = PILImage.MAX_IMAGE_PIXELS
    make_tree(tmp_path, per_class=3, size=(8, 8))
    big = save(tmp_path / "cat" / "huge.png", grey(3, (40, 50)))
    with pytest.raises(ImageError, match=f"{big}.*50x40 = 2000 pixels exceeds max_pixels=1000"):
        load_dataset(f"folder:{tmp_path}", max_pixels=1000, image_size=(8, 8))
    ds = load_dataset(f"folder:{tmp_path}", max_pixels=1000, image_size=(8, 8),
                      on_error="skip", test_size=0.4)
    assert ds.skipped == [(str(big), "50x40 = 2000 pixels exceeds max_pixels=1000")]
    assert PILImage.MAX_IMAGE_PIXELS == limit_before  # per call, not global


def test_empty_class_folder(tmp_path):
    make_tree(tmp_path, per_class=3)
    (tmp_path / "empty_cls").mkdir()
    (tmp_path / "empty_cls" / ".DS_Store").write_bytes(b"x")  # hidden files do not count
    with pytest.raises(DatasetError, match=f"{tmp_path / 'empty_cls'}: empty class folder"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match=f"{tmp_path}: folder with no images"):
        load_dataset(f"folder:{tmp_path}")
    save(tmp_path / "loose.png", grey(1))
    with pytest.raises(DatasetError, match="holds 1 images but no <class> sub-folders"):
        load_dataset(f"folder:{tmp_path}")


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


@pytest.mark.parametrize("options, msg", [
    ({"mode": "CMYK"}, "mode"), ({"on_error": "ignore"}, "on_error"),
    ({"max_pixels": 0}, "max_pixels"), ({"image_size": (0, 4)}, "image_size"),
    ({"image_size": "32"}, "image_size"), ({"image_size": (2.5, 4)}, "image_size"),
    ({"backend": "gpu"}, "backend"), ({"n_jobs": 0}, "n_jobs"), ({"n_jobs": 1.5}, "n_jobs"),
    ({"n_jobs": True}, "n_jobs"),
])
def test_bad_options(tmp_path, options, msg):
    make_tree(tmp_path, per_class=2)
    with pytest.raises(ConfigError, match=msg):
        load_dataset(f"folder:{tmp_path}", **options)


def test_too_few_images_for_a_stratified_split(tmp_path):
    make_tree(tmp_path, per_class=1)
    with pytest.raises(DatasetError, match=f"{tmp_path}: cannot make a stratified split"):
        load_dataset(f"folder:{tmp_path}")


# --- worker processes -------------------------------------------------------------

needs_fork = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="worker processes are only forked on Linux")


def _folder():
    # Imported when a test runs, not at collection: importing the module
    # registers the loader, and the registry's order is tested elsewhere.
    return importlib.import_module("imgcls.datasets.folder")


@pytest.fixture
def pools(monkeypatch):
    """Record which executors a load creates (to know the process path really ran)."""
    folder = _folder()
    made = []

    class Processes(folder.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            made.append("processes")
            super().__init__(*args, **kwargs)

    class Threads(folder.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            made.append("threads")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(folder, "ProcessPoolExecutor", Processes)
    monkeypatch.setattr(folder, "ThreadPoolExecutor", Threads)
    return made


def test_auto_backend_rule(monkeypatch):
    folder = _folder()
    monkeypatch.setattr(folder, "_fork_is_usable", lambda: True)
    n, small, big = folder.PROCESS_MIN_FILES, 32 * 32, 256 * 256
    assert folder.choose_backend("auto", n, 2, small) == "processes"
    assert folder.choose_backend("auto", n - 1, 2, small) == "sequential"  # fork not worth it
    assert folder.choose_backend("auto", n, 2, big) == "threads"            # GIL released
    assert folder.choose_backend("auto", n, 2, None) == "threads"           # unreadable header
    assert folder.choose_backend("processes", 2, 2, None) == "processes"
    assert folder.choose_backend("processes", n, 1, small) == "sequential"  # n_jobs=1
    assert folder.choose_backend("threads", n, 2, small) == "threads"
    monkeypatch.setattr(folder, "_fork_is_usable", lambda: False)
    assert folder.choose_backend("processes", n, 2, small) == "threads"
    assert folder.choose_backend("auto", n, 2, small) == "threads"


@needs_fork
def test_processes_give_the_same_arrays_as_one_sequential_loop(tmp_path, pools):
    rng = np.random.default_rng(0)
    for i in range(70):  # several chunks of at least 16 files, every format, RGB and grey
        ext = list(FORMATS)[i % len(FORMATS)]
        shape = (48, 40, 3) if i % 3 else (48, 40)
        save(tmp_path / f"c{i % 3}" / f"{i:03d}.{ext}",
             rng.integers(0, 256, shape, dtype=np.uint8), FORMATS[ext])
    for options in ({"mode": "RGB"}, {"mode": "L", "image_size": (12, 10)}):
        seq = load_dataset(f"folder:{tmp_path}", n_jobs=1, **options)
        pools.clear()
        par = load_dataset(f"folder:{tmp_path}", n_jobs=2, backend="processes", **options)
        assert pools == ["processes"]
        for a in ("X_train", "X_test", "y_train", "y_test"):
            np.testing.assert_array_equal(getattr(par, a), getattr(seq, a))
        thr = load_dataset(f"folder:{tmp_path}", n_jobs=2, backend="threads", **options)
        np.testing.assert_array_equal(thr.X_train, seq.X_train)
    assert seq.X_train.shape[1:] == (12, 10, 1)


@needs_fork
def test_processes_name_the_bad_file_skip_it_and_apply_the_pixel_limit(tmp_path, pools):
    from PIL import Image as PILImage

    limit_before = PILImage.MAX_IMAGE_PIXELS
    make_tree(tmp_path, per_class=30, size=(8, 8))
    bad = tmp_path / "dog" / "017.png"  # in a later chunk than the first
    save(bad, np.random.default_rng(0).integers(0, 256, (30, 30), dtype=np.uint8))
    _truncate(bad)
    big = save(tmp_path / "cat" / "025.png", grey(3, (40, 50)))
    odd = save(tmp_path / "dog" / "029.png", grey(3, (9, 8)))
    before = snapshot(tmp_path)
    run = dict(n_jobs=2, backend="processes", test_size=0.25)
    with pytest.raises(ImageError, match=f"{bad}.*truncated.*on_error='skip'"):
        load_dataset(f"folder:{tmp_path}", image_size=(8, 8), **run)
    with pytest.raises(ImageError, match=f"{big}.*50x40 = 2000 pixels exceeds max_pixels=1000"):
        load_dataset(f"folder:{tmp_path}", max_pixels=1000, **run)
    ds = load_dataset(f"folder:{tmp_path}", max_pixels=1000, on_error="skip",
                      image_size=(8, 8), **run)
    assert [p for p, _ in ds.skipped] == [str(big), str(bad)]
    assert ds.skipped[0][1] == "50x40 = 2000 pixels exceeds max_pixels=1000"
    assert "corrupt or truncated" in ds.skipped[1][1]
    assert len(ds.y_train) + len(ds.y_test) == 58
    with pytest.raises(DatasetError, match=r"different sizes.*cat/0\d\d\.png is 8x8 .*029\.png is 8x9"):
        load_dataset(f"folder:{tmp_path}", on_error="skip", max_pixels=1000, **run)
    assert set(pools) == {"processes"} and odd.exists()
    assert PILImage.MAX_IMAGE_PIXELS == limit_before  # per call, also in workers
    assert snapshot(tmp_path) == before


@needs_fork
@pytest.mark.timeout(60)
def test_forking_after_openmp_threads_ran_does_not_hang(tmp_path, pools):
    # faiss starts an OpenMP thread pool; forking a process with it alive must
    # still give working workers (they never call into OpenMP).
    faiss = pytest.importorskip("faiss")
    x = np.random.default_rng(0).random((2000, 16), dtype=np.float32)
    faiss.omp_set_num_threads(2)
    index = faiss.IndexFlatL2(16)
    index.add(x)
    index.search(x, 3)
    make_tree(tmp_path, per_class=20)
    ds = load_dataset(f"folder:{tmp_path}", n_jobs=2, backend="processes")
    assert pools == ["processes"] and len(ds.y_train) + len(ds.y_test) == 40
