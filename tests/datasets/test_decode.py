"""The one decoding path: folder loader (all backends) and predict see the same pixels."""

import io
import os
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from fifo_helpers import unblock_fifos  # noqa: F401  (a fixture)
from imgcls.datasets import load_dataset
from imgcls.datasets._decode import FORMATS, decode_chunk, decode_file, header_sizes
from imgcls.errors import ConfigError, DatasetError, ImageError
from imgcls.neighbors import KNearestNeighbor
from imgcls.pipeline import read_image_for_model

ORIENTATION = 0x0112
H, W = 9, 12  # displayed size of every file of the byte-for-byte test


def _exif(orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def _noise(shape, seed, high=256, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


def _write(path, image, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def _palette_with_transparency(seed):
    im = Image.fromarray(_noise((H, W), seed, high=4), "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250])
    return im


def _variety(root):
    """One file per decoding rule, all shown as W x H, in two classes."""
    files = {
        "a/grey8.png": (Image.fromarray(_noise((H, W), 1), "L"), {}),
        "a/grey16.png": (Image.fromarray(_noise((H, W), 2, 65536, np.uint16)), {}),
        "a/rgba.png": (Image.fromarray(_noise((H, W, 4), 3), "RGBA"), {}),
        "a/la.png": (Image.fromarray(_noise((H, W, 2), 4), "LA"), {}),
        "a/bilevel.png": (Image.fromarray(_noise((H, W), 5, 2).astype(bool)), {}),
        "b/palette.png": (_palette_with_transparency(6), {"transparency": 3}),
        "b/palette.gif": (_palette_with_transparency(7), {"transparency": 0}),
        "b/cmyk.jpg": (Image.fromarray(_noise((H, W, 4), 8), "CMYK"), {"quality": 95}),
        # Stored W x H turned a quarter: shown as W x H once EXIF is applied.
        "b/turned.jpg": (Image.fromarray(_noise((W, H, 3), 9), "RGB"), {"exif": _exif(6)}),
        "b/rgb.webp": (Image.fromarray(_noise((H, W, 3), 10), "RGB"), {"lossless": True}),
    }
    for split in ("train", "test"):
        for name, (image, save) in files.items():
            _write(root / split / name, image, **save)
    return sorted(files)


@pytest.mark.parametrize("mode, image_size", [("RGB", None), ("L", None), ("RGB", (7, 5)),
                                              ("L", (20, 30))])
def test_model_trained_from_a_folder_predicts_on_the_same_bytes(tmp_path, mode, image_size):
    names = _variety(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}", mode=mode, image_size=image_size, n_jobs=1)
    model = KNearestNeighbor(k=1).fit(ds.X_train, ds.y_train)
    inputs = np.concatenate([read_image_for_model(tmp_path / "train" / name, model.image_shape_)
                             for name in names])
    assert inputs.shape == ds.X_train.shape
    for name, row, got in zip(names, ds.X_train, inputs):
        np.testing.assert_array_equal(got, row, err_msg=name)
    np.testing.assert_array_equal(model.predict(inputs), ds.y_train)


def test_threads_and_processes_decode_like_one_loop(tmp_path):
    _variety(tmp_path)
    options = {"mode": "RGB", "image_size": (10, 8)}
    one = load_dataset(f"folder:{tmp_path}", n_jobs=1, **options)
    backends = ["threads"] + (["processes"] if sys.platform.startswith("linux") else [])
    for backend in backends:
        par = load_dataset(f"folder:{tmp_path}", n_jobs=2, backend=backend, **options)
        np.testing.assert_array_equal(par.X_train, one.X_train)


def test_a_chunk_split_into_several_blocks_gives_the_same_arrays(tmp_path, monkeypatch):
    import importlib

    decode = importlib.import_module("imgcls.datasets._decode")
    for i in range(40):
        _write(tmp_path / "ab"[i % 2] / f"{i:03d}.png", Image.fromarray(_noise((6, 5, 3), i)))
    whole = load_dataset(f"folder:{tmp_path}", n_jobs=1)
    monkeypatch.setattr(decode, "BLOCK_BYTES", 3 * 6 * 5 * 3)  # three images per block
    backends = [("auto", 1), ("threads", 2)] + ([("processes", 2)]
                                                if sys.platform.startswith("linux") else [])
    for backend, n_jobs in backends:
        split = load_dataset(f"folder:{tmp_path}", n_jobs=n_jobs, backend=backend)
        np.testing.assert_array_equal(split.X_train, whole.X_train)
        np.testing.assert_array_equal(split.X_test, whole.X_test)
    blocks, kept, _, _ = decode.decode_chunk(sorted(map(str, tmp_path.rglob("*.png")))[:10],
                                             "RGB", None, None, False)
    assert [len(b) for b in blocks] == [3, 3, 3, 1] and kept == list(range(10))


def test_sixteen_bit_grey_keeps_the_high_byte(tmp_path):
    values = np.array([[0, 255, 256, 40000, 65535]], np.uint16)
    for split in ("train", "test"):
        _write(tmp_path / split / "c" / "deep.png", Image.fromarray(values))
    ds = load_dataset(f"folder:{tmp_path}", mode="L")
    assert ds.X_train[0, 0, :, 0].tolist() == (values[0] >> 8).tolist() == [0, 0, 1, 156, 255]


def test_transparency_is_composited_onto_black(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (200, 100, 50, 128))
    rgba.putpixel((1, 0), (255, 255, 255, 0))
    assert decode_file(_write(tmp_path / "a.png", rgba)).tolist() == [[[100, 50, 25], [0, 0, 0]]]
    la = Image.new("LA", (1, 1), (200, 128))
    assert decode_file(_write(tmp_path / "la.png", la), "L").tolist() == [[[100]]]
    assert decode_file(tmp_path / "la.png", "RGB").tolist() == [[[100, 100, 100]]]
    pal = _palette_with_transparency(0)
    pal.putpixel((0, 0), 3)
    pal.putpixel((1, 0), 0)
    got = decode_file(_write(tmp_path / "p.png", pal, transparency=3))
    assert got[0, 0].tolist() == [0, 0, 0] and got[0, 1].tolist() == [255, 0, 0]
    # A grey image with a transparent grey level (PNG tRNS) is transparent there too.
    grey = Image.fromarray(np.array([[7, 9]], np.uint8), "L")
    assert decode_file(_write(tmp_path / "g.png", grey, transparency=7), "L").ravel().tolist() \
        == [0, 9]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size", [None, (6, 4)])
def test_exif_orientation_is_applied(tmp_path, orientation, size):
    pixels = Image.fromarray(_noise((8, 5, 3), orientation), "RGB")
    plain = _write(tmp_path / "plain.jpg", pixels, quality=90)
    tagged = _write(tmp_path / "tagged.jpg", pixels, quality=90, exif=_exif(orientation))
    upright = ImageOps.exif_transpose(Image.open(tagged))  # Pillow's own reading
    assert decode_file(plain).shape == (8, 5, 3)  # same pixel data, no tag
    got = decode_file(tagged, size=size)
    if size is None:
        np.testing.assert_array_equal(got, np.asarray(upright))
        assert header_sizes([str(tagged)], None) == [got.shape[:2]]
    else:
        assert got.shape == (*size, 3)
        np.testing.assert_array_equal(got, np.asarray(upright.resize(size[::-1],
                                                                     Image.Resampling.BILINEAR)))


def _png_with_trailing_exif(orientation):
    """A PNG whose eXIf chunk follows the pixel data (allowed; Pillow reads it on load)."""
    import struct
    import zlib

    out = io.BytesIO()
    Image.fromarray(_noise((3, 4), orientation), "L").save(out, "PNG")
    png = out.getvalue()
    payload = _exif(orientation).removeprefix(b"Exif\x00\x00")
    chunk = (struct.pack(">I", len(payload)) + b"eXIf" + payload
             + struct.pack(">I", zlib.crc32(b"eXIf" + payload)))
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def test_exif_after_the_pixels_is_applied_too(tmp_path):
    path = tmp_path / "late.png"
    path.write_bytes(_png_with_trailing_exif(6))
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert upright.shape == (4, 3)
    np.testing.assert_array_equal(decode_file(path, "L")[..., 0], upright)
    assert header_sizes([str(path)], None) == [(3, 4)]  # the header cannot know
    # The folder loader still gets the upright size from decoding.
    for split in ("train", "test"):
        (tmp_path / split / "c").mkdir(parents=True)
        (tmp_path / split / "c" / "late.png").write_bytes(path.read_bytes())
        _write(tmp_path / split / "c" / "plain.png", Image.new("L", (3, 4)))
    ds = load_dataset(f"folder:{tmp_path}", mode="L")
    np.testing.assert_array_equal(ds.X_train[0, ..., 0], upright)


@pytest.mark.parametrize("shape", [(7, 6, 3), (200, 150, 3)])  # in memory; streamed
def test_rgb_and_grey_files_decode_like_pillow_by_name(tmp_path, shape):
    # Pillow gets a file object from open_regular (or the bytes of a small
    # file); the pixels are those of Image.open(path).
    import imgcls.datasets._decode as decode

    rgb = _noise(shape, 0)
    for ext, fmt in (("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("webp", "WEBP"),
                     ("tif", "TIFF")):
        path = _write(tmp_path / f"x.{ext}", Image.fromarray(rgb), format=fmt)
        if fmt in ("PNG", "BMP"):
            assert (path.stat().st_size < decode.IN_MEMORY_BYTES) == (shape[0] < 100)
        for mode in ("RGB", "L"):
            with Image.open(path) as im:
                want = np.asarray(im.convert(mode)).reshape(*shape[:2], -1)
            np.testing.assert_array_equal(decode_file(path, mode), want)


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_pixels_have_no_agreed_range(tmp_path, mode):
    array = np.full((4, 4), 3, np.int32 if mode == "I" else np.float32)
    path = _write(tmp_path / "c" / "deep.png", Image.fromarray(array, mode), format="TIFF")
    for cls in ("c", "d"):
        for i in range(2):
            _write(tmp_path / cls / f"ok{i}.png", Image.new("L", (4, 4)))
    with pytest.raises(ImageError, match=rf"deep\.png: mode '{mode}' \(32-bit .*no agreed 8-bit"):
        decode_file(path)
    ds = load_dataset(f"folder:{tmp_path}", on_error="skip", test_size=0.5)
    assert [p for p, _ in ds.skipped] == [str(path)] and "no agreed" in ds.skipped[0][1]
    with pytest.raises(ImageError, match="no agreed 8-bit range"):
        read_image_for_model(path, (4, 4, 1))


def test_only_the_listed_formats_are_opened(tmp_path):
    path = _write(tmp_path / "x.png", Image.new("RGB", (4, 4)), format="PPM")
    with pytest.raises(ImageError, match=r"x\.png: .*or not in a format imgcls reads \(PNG"):
        decode_file(path)
    assert "PPM" not in FORMATS


def _bomb_limit(monkeypatch):
    # Pillow refuses images of more than twice MAX_IMAGE_PIXELS (a
    # DecompressionBombError, which is not an OSError).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("backend, n_jobs", [("auto", 1), ("threads", 2), ("processes", 2)])
def test_decompression_bomb_is_an_unreadable_image(tmp_path, monkeypatch, backend, n_jobs):
    for cls in ("a", "b"):
        for i in range(3):
            _write(tmp_path / cls / f"{i}.png", Image.new("L", (5, 5), i))
    bomb = _write(tmp_path / "a" / "bomb.png", Image.new("L", (20, 20)))
    _bomb_limit(monkeypatch)
    run = {"backend": backend, "n_jobs": n_jobs, "image_size": (5, 5), "test_size": 0.4}
    with pytest.raises(ImageError, match=rf"{bomb}: over Pillow's decompression-bomb limit"):
        load_dataset(f"folder:{tmp_path}", **run)
    ds = load_dataset(f"folder:{tmp_path}", on_error="skip", **run)
    assert [p for p, _ in ds.skipped] == [str(bomb)]
    assert "decompression-bomb" in ds.skipped[0][1]
    with pytest.raises(ImageError, match=rf"{bomb}: over Pillow's decompression-bomb limit"):
        read_image_for_model(bomb, (5, 5, 1))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("backend, n_jobs", [("auto", 1), ("threads", 2), ("processes", 2)])
def test_a_fifo_is_refused_without_waiting(tmp_path, unblock_fifos, backend, n_jobs):
    for cls in ("a", "b"):
        for i in range(3):
            _write(tmp_path / cls / f"{i}.png", Image.new("L", (5, 5), i))
    fifo = tmp_path / "a" / "0000.png"  # first in sort order: also the peeked header
    os.mkfifo(fifo)
    unblock_fifos.append(fifo)
    run = {"backend": backend, "n_jobs": n_jobs, "test_size": 0.4}
    with pytest.raises(ImageError, match=rf"{fifo}: a FIFO \(named pipe\), not a regular file"):
        load_dataset(f"folder:{tmp_path}", **run)
    ds = load_dataset(f"folder:{tmp_path}", on_error="skip", **run)
    assert ds.skipped == [(str(fifo), "a FIFO (named pipe), not a regular file")]
    with pytest.raises(ImageError, match=rf"{fifo}: a FIFO"):
        read_image_for_model(fifo, (5, 5, 1))


@pytest.mark.parametrize("make, match, header", [
    (None, "no such file", None),
    (lambda p: p.mkdir(), "a directory, not a regular file", None),
    (lambda p: p.write_bytes(b"<html>not an image</html>"), "corrupt or truncated image, or "
     r"not in a format imgcls reads \(PNG, JPEG, BMP, DIB, GIF, WEBP, TIFF\)$", None),
    (lambda p: p.write_bytes(_png_bytes()[:60]), r"corrupt or truncated image \(OSError: ",
     (30, 30)),  # the header is whole
])
def test_decode_file_names_the_file_and_the_cause(tmp_path, make, match, header):
    path = tmp_path / "bad.png"
    if make is not None:
        make(path)
    with pytest.raises(ImageError, match=rf"^{path}: {match}"):
        decode_file(path)
    assert header_sizes([str(path)], None) == [header]


def _png_bytes():
    out = io.BytesIO()
    Image.fromarray(_noise((30, 30), 0), "L").save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("options", [{"mode": "CMYK"}, {"size": (0, 3)}, {"size": (2.0, 3)},
                                     {"size": (True, 3)}, {"size": (1, 2, 3)}])
def test_decode_file_options(tmp_path, options):
    path = _write(tmp_path / "x.png", Image.new("L", (4, 4)))
    with pytest.raises(ConfigError, match="mode must be|size must be"):
        decode_file(path, **options)


def test_max_pixels_is_checked_on_the_header(tmp_path):
    path = _write(tmp_path / "big.png", Image.new("L", (50, 40)))
    with pytest.raises(ImageError, match=r"big\.png: 50x40 = 2000 pixels exceeds max_pixels=1999"):
        decode_file(path, max_pixels=1999)
    assert decode_file(path, "L", max_pixels=2000).shape == (40, 50, 1)
    assert header_sizes([str(path)], 1999) == [None]


# --- sizes are compared before the batch buffer is reserved ------------------------


def test_a_large_first_image_does_not_reserve_n_times_its_size(tmp_path):
    # 2000 x 2000 grey (4 MB decoded) first, then 600 small files: the old
    # loader reserved a chunk block of 64 x 4 MB and then a 600 x 4 MB buffer
    # before it noticed that the sizes differ.
    big = _write(tmp_path / "a" / "000.png", Image.new("L", (2000, 2000), 3))
    small = Image.new("L", (8, 8), 1)
    for i in range(1, 601):
        _write(tmp_path / "ab"[i % 2] / f"{i:03d}.png", small)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=rf"different sizes, e\.g\. {big} is 2000x2000 and "
                                               rf".*/\d{{3}}\.png is 8x8"):
            load_dataset(f"folder:{tmp_path}", mode="L", n_jobs=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_headers_are_compared_before_a_large_buffer(tmp_path, monkeypatch):
    import importlib

    folder = importlib.import_module("imgcls.datasets.folder")
    decode = importlib.import_module("imgcls.datasets._decode")
    monkeypatch.setattr(folder, "PREALLOC_BYTES", 1000)  # 70 images of 20 x 30 are over it
    decoded = []
    real = decode._decode
    monkeypatch.setattr(decode, "_decode", lambda *a: decoded.append(a) or real(*a))
    for i in range(70):  # the odd one is the last, in the second chunk of 64 files
        _write(tmp_path / "train" / "ab"[i // 35] / f"{i:03d}.png", Image.new("L", (20, 30)))
    for cls in ("a", "b"):
        _write(tmp_path / "test" / cls / "x.png", Image.new("L", (20, 30)))
    first = tmp_path / "train" / "a" / "000.png"
    late = _write(tmp_path / "train" / "b" / "069.png", Image.new("L", (21, 30)))
    with pytest.raises(DatasetError, match=rf"{first} is 20x30 and {late} is 21x30"):
        load_dataset(f"folder:{tmp_path}", mode="L", n_jobs=1)
    assert decoded == []  # from the headers alone
    monkeypatch.setattr(folder, "PREALLOC_BYTES", 1 << 30)
    with pytest.raises(DatasetError, match=rf"{first} is 20x30 and {late} is 21x30"):
        load_dataset(f"folder:{tmp_path}", mode="L", n_jobs=1)
    assert len(decoded) > 64  # found by decoding


# --- property: the chunk loop and the single-file function agree ------------------

_MODES = st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "I;16", "1", "CMYK"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=_MODES, target=st.sampled_from(["L", "RGB"]),
       size=st.one_of(st.none(), st.tuples(st.integers(1, 9), st.integers(1, 9))),
       h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_decode_chunk_rows_are_decode_file(tmp_path, source, target, size, h, w, seed):
    bands = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2, "P": 1, "I;16": 1, "1": 1, "CMYK": 4}[source]
    high, dtype = (65536, np.uint16) if source == "I;16" else (256, np.uint8)
    array = _noise((h, w, bands) if bands > 1 else (h, w), seed, high, dtype)
    if source == "1":
        image = Image.fromarray(array > 127)
    elif source == "I;16":
        image = Image.fromarray(array)
    else:
        image = Image.fromarray(array, source)
    path = _write(tmp_path / f"x{seed}.{'jpg' if source == 'CMYK' else 'png'}", image)
    blocks, kept, errors, mismatch = decode_chunk([str(path)] * 3, target, size, None, False)
    assert kept == [0, 1, 2] and errors == [] and mismatch is None
    one = decode_file(path, target, size)
    for row in np.concatenate(blocks):
        np.testing.assert_array_equal(row, one)


# -- headers that claim more pixels than their data can fill ---------------------------

def _allocations(monkeypatch):
    """Sizes of the images Pillow allocates for decoding (ImageFile.load_prepare)."""
    from PIL import ImageFile

    sizes = []
    prepare = ImageFile.ImageFile.load_prepare

    def spy(self):
        sizes.append(self.size)
        return prepare(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", spy)
    return sizes


def _peak_rss_growth(fn):
    """Resident-memory peak (bytes) that ``fn()`` adds; None where VmHWM cannot be reset."""
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return None
    rss0 = status("VmRSS:")
    fn()
    return status("VmHWM:") - rss0


def _refused(path, match):
    def call():
        with pytest.raises(ImageError, match=match) as info:
            decode_file(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    return call


def _png_chunk(kind, data):
    import zlib
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def test_truncated_bmp_claiming_a_huge_size_is_refused_before_allocating(tmp_path, monkeypatch):
    raw = bytearray(_write(tmp_path / "one.bmp", Image.new("RGB", (1, 1))).read_bytes())
    raw[22:26] = (64 << 20).to_bytes(4, "little")  # height: 64 Mi rows of 4 bytes, 48 bytes present
    path = tmp_path / "huge.bmp"
    path.write_bytes(bytes(raw))
    allocated = _allocations(monkeypatch)
    growth = _peak_rss_growth(_refused(path, r"truncated: 1x67108864 pixels need \d+ bytes"))
    assert allocated == []
    assert growth is None or growth < 16 << 20


def test_png_claiming_more_pixels_than_its_deflate_data_can_fill_is_refused(tmp_path, monkeypatch):
    raw = _write(tmp_path / "one.png", Image.new("L", (1, 1))).read_bytes()
    # 8000 x 8000 grey (under Pillow's bomb limit) needs 64 MB inflated, but a
    # few bytes of deflate data inflate to at most 1032 times their size.
    ihdr = (8000).to_bytes(4, "big") * 2 + raw[24:29]
    path = tmp_path / "claims.png"
    path.write_bytes(raw[:8] + _png_chunk(b"IHDR", ihdr) + raw[33:])
    allocated = _allocations(monkeypatch)
    growth = _peak_rss_growth(_refused(path, r"8000x8000 pixels need \d+ decoded bytes.*1032:1"))
    assert allocated == []
    assert growth is None or growth < 16 << 20


def test_gif_canvas_far_larger_than_its_frame_is_refused(tmp_path, monkeypatch):
    raw = bytearray(_write(tmp_path / "small.gif", Image.new("P", (2, 2))).read_bytes())
    raw[6:10] = (4000).to_bytes(2, "little") + (2000).to_bytes(2, "little")  # 8 Mpx screen
    path = tmp_path / "canvas.gif"
    path.write_bytes(bytes(raw))
    allocated = _allocations(monkeypatch)
    _refused(path, r"canvas 4000x2000 is larger than its image data \(4 pixels\)")()
    assert allocated == []
    # A canvas under MAX_UNCOVERED_CANVAS_PIXELS is background around the frame, still decoded.
    raw[6:10] = (300).to_bytes(2, "little") + (200).to_bytes(2, "little")
    (tmp_path / "ok.gif").write_bytes(bytes(raw))
    assert decode_file(tmp_path / "ok.gif", "L").shape == (200, 300, 1)


def test_webp_claiming_far_more_pixels_than_its_bytes_is_refused(tmp_path, monkeypatch):
    # A flat lossless WebP: tiny for its size, so over the policy's ratio once over
    # MAX_UNCOVERED_CANVAS_PIXELS (Pillow would allocate the canvas before decoding).
    big = _write(tmp_path / "flat.webp", Image.new("RGB", (4100, 1100)), lossless=True)
    assert 4100 * 1100 > 1032 * big.stat().st_size
    allocated = _allocations(monkeypatch)
    _refused(big, r"a WebP of 4100x1100 pixels in \d+ bytes")()
    assert allocated == []
    # under MAX_UNCOVERED_CANVAS_PIXELS any WebP is decoded
    small = _write(tmp_path / "small.webp", Image.new("RGB", (2000, 2000)), lossless=True)
    assert decode_file(small, "L", (4, 4)).shape == (4, 4, 1)


def test_images_at_the_compression_limits_still_decode(tmp_path):
    # Zeros deflate close to the 1032:1 limit; the stated bound must not refuse them.
    flat = _write(tmp_path / "flat.png", Image.new("L", (3000, 3000)), optimize=True)
    assert (3000 * 3001) / (flat.stat().st_size) > 500
    assert decode_file(flat, "L", (4, 4)).sum() == 0
    gif = _write(tmp_path / "flat.gif", Image.new("P", (2000, 2000)))
    assert decode_file(gif, "L", (4, 4)).shape == (4, 4, 1)
    bmp = _write(tmp_path / "exact.bmp", Image.fromarray(_noise((7, 5), 1)))
    assert decode_file(bmp, "L").tolist() == _noise((7, 5), 1)[..., None].tolist()
    # the last row's padding may be missing (rows of 5 bytes stored in 8)
    bmp.write_bytes(bmp.read_bytes()[:-3])
    assert decode_file(bmp, "L").shape == (7, 5, 1)


def test_memory_error_while_decoding_is_an_image_error(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = _write(tmp_path / "a.png", Image.new("RGB", (4, 4)))

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    with pytest.raises(ImageError, match=r"a\.png: too large to decode in the memory available"):
        decode_file(path)
    blocks, kept, errors, _ = decode_chunk([str(path)], "RGB", None, None, False)
    assert blocks == [] and kept == [] and errors == [(0, "too large to decode in the memory "
                                                       "available (MemoryError)")]


def test_jpeg_claiming_more_pixels_than_its_data_can_code_is_refused(tmp_path, monkeypatch):
    raw = bytearray(_write(tmp_path / "small.jpg", Image.new("RGB", (8, 8))).read_bytes())
    sof = raw.find(b"\xff\xc0")
    raw[sof + 5:sof + 9] = (8000).to_bytes(2, "big") * 2  # libjpeg would pad it with grey
    path = tmp_path / "claims.jpg"
    path.write_bytes(bytes(raw))
    allocated = _allocations(monkeypatch)
    _refused(path, r"8000x8000 pixels are more than the \d+ bytes of JPEG data can code")()
    assert allocated == []
    # Arithmetic coding has no such bound: that file is left to Pillow.
    raw[sof + 1] = 0xC9
    path.write_bytes(bytes(raw))
    assert decode_file(path, "RGB", (4, 4)).shape == (4, 4, 3)
    # A flat photo-sized JPEG (the most compressible kind) is far inside the bound.
    flat = _write(tmp_path / "flat.jpg", Image.new("RGB", (2000, 1500), (255, 255, 255)),
                  quality=5, subsampling=2, optimize=True, progressive=True)
    assert decode_file(flat, "RGB", (3, 3)).min() >= 240


# RLE8 codes: "delta" 0 right, 60 rows up (skipping 60 rows), then "end of bitmap"
_SKIP_60_ROWS = b"\x00\x02\x00\x3c\x00\x01"


def _rle8_bmp(path, width, height, data=_SKIP_60_ROWS):
    """An 8-bit RLE BMP (BI_RLE8) of grey palette whose pixel data is ``data``."""
    import struct

    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    path.write_bytes(b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
                     + info + palette + data)
    return path


def test_bmp_rle_skipping_more_pixels_than_allowed_is_refused(tmp_path, monkeypatch):
    # every pixel skipped: background (index 0)
    small = _rle8_bmp(tmp_path / "small.bmp", 100, 60)
    try:
        out = decode_file(small, "L")
    except ImageError as exc:  # Pillow < 11 decodes no RLE stream made of skips alone
        assert "not enough image data" in str(exc) and "RLE data can code" not in str(exc)
    else:
        assert out.shape == (60, 100, 1) and out.max() == 0
    big = _rle8_bmp(tmp_path / "big.bmp", 4000, 2000)
    allocated = _allocations(monkeypatch)
    _refused(big, r"4000x2000 pixels, more than the 6 bytes of RLE data can code")()
    assert allocated == []


def test_tiff_claiming_more_pixels_than_its_lzw_data_can_hold_is_refused(tmp_path, monkeypatch):
    import struct

    path = _write(tmp_path / "small.tif", Image.new("L", (40, 30)), compression="tiff_lzw")
    raw = bytearray(path.read_bytes())
    assert raw[:2] == b"II"
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for k in range(struct.unpack_from("<H", raw, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", raw, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<H" if kind == 3 else "<I", raw, entry + 8, 8000)
    path.write_bytes(bytes(raw))
    allocated = _allocations(monkeypatch)
    _refused(path, r"8000x8000 pixels need \d+ decoded bytes.*tiff_lzw TIFF.*2731:1")()
    assert allocated == []
    # flat (most compressible) TIFFs of each bounded compression still decode
    for compression in ("packbits", "tiff_lzw", "tiff_adobe_deflate"):
        flat = _write(tmp_path / f"{compression}.tif", Image.new("L", (1500, 1000)),
                      compression=compression)
        assert decode_file(flat, "L", (2, 2)).tolist() == [[[0], [0]], [[0], [0]]]


def test_large_transparent_image_is_composited_in_bands_exactly_and_in_little_memory(tmp_path):
    import ctypes

    rgba = _noise((1500, 2000, 4), 5)
    path = _write(tmp_path / "big.png", Image.fromarray(rgba, "RGBA"), compress_level=1)
    want = ((rgba[..., :3].astype(np.uint32) * rgba[..., 3:] + 127) // 255).astype(np.uint8)
    np.testing.assert_array_equal(decode_file(path), want)  # several bands, each exact

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory back, so the peak is this call's
    except (OSError, AttributeError):
        pytest.skip("needs glibc")
    growth = _peak_rss_growth(lambda: decode_file(path, "RGB", (8, 8)))
    if growth is None:
        pytest.skip("VmHWM cannot be reset here")
    # decoded RGBA (4 bytes a pixel) and the composited RGB (4) are what must
    # exist; whole-image numpy temporaries took ~26 bytes a pixel
    assert growth < 14 * rgba.shape[0] * rgba.shape[1]
