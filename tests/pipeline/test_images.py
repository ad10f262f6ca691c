"""Reading image files into a model's input shape (imgcls predict)."""

import numpy as np
import pytest
from PIL import Image

from imgcls.errors import ConfigError, ImageError
from imgcls.pipeline import read_image_for_model


def _save(tmp_path, name, img):
    path = tmp_path / name
    img.save(path)
    return path


def test_grey_to_grey_and_resize(tmp_path):
    arr = np.zeros((56, 56), np.uint8)
    arr[:, 28:] = 255
    path = _save(tmp_path, "half.png", Image.fromarray(arr, "L"))
    x = read_image_for_model(path, (28, 28, 1))
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.uint8
    assert x[0, :, :13].max() == 0 and x[0, :, 15:].min() == 255


def test_rgb_to_grey_uses_luma(tmp_path):
    path = _save(tmp_path, "red.png", Image.new("RGB", (8, 8), (255, 0, 0)))
    x = read_image_for_model(path, (8, 8, 1))
    assert np.all(x == 76)  # 0.299 * 255


def test_grey_to_rgb_copies_channels(tmp_path):
    path = _save(tmp_path, "g.png", Image.new("L", (4, 4), 100))
    x = read_image_for_model(path, (4, 4, 3))
    assert x.shape == (1, 4, 4, 3) and np.all(x == 100)


def test_rgba_composited_on_black(tmp_path):
    img = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    img.putpixel((0, 0), (255, 255, 255, 255))
    x = read_image_for_model(_save(tmp_path, "a.png", img), (4, 4, 1))
    assert x[0, 0, 0, 0] == 255 and x[0, 1, 1, 0] == 0


def test_palette_and_jpeg_and_16bit(tmp_path):
    pal = Image.new("RGB", (6, 6), (0, 0, 255)).convert("P")
    assert read_image_for_model(_save(tmp_path, "p.png", pal), (6, 6, 3))[0, 0, 0].tolist() \
        == [0, 0, 255]
    jpg = _save(tmp_path, "x.jpg", Image.new("RGB", (10, 10), (200, 200, 200)))
    assert abs(int(read_image_for_model(jpg, (5, 5, 1)).mean()) - 200) <= 2
    deep = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    path = tmp_path / "deep.png"
    deep.save(path)
    assert np.all(read_image_for_model(path, (4, 4, 1)) == 255)


@pytest.mark.parametrize("content, match", [
    (b"not an image at all", "corrupt or truncated image, or not in a format imgcls reads"),
    (None, "no such file"),
])
def test_unreadable_file_named(tmp_path, content, match):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=rf"bad\.png: {match}"):
        read_image_for_model(path, (8, 8, 1))


def test_truncated_png(tmp_path):
    path = _save(tmp_path, "t.png", Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageError, match=r"t\.png: corrupt or truncated image"):
        read_image_for_model(path, (8, 8, 1))


def test_directory(tmp_path):
    with pytest.raises(ImageError, match=f"{tmp_path}: a directory, not a regular file"):
        read_image_for_model(tmp_path, (8, 8, 1))


def test_float_image_is_ambiguous(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32), "F").save(path)
    with pytest.raises(ImageError, match=r"f\.tif: mode 'F'.*no agreed 8-bit range"):
        read_image_for_model(path, (4, 4, 1))


def test_model_channel_count_without_conversion(tmp_path):
    path = _save(tmp_path, "g.png", Image.new("L", (4, 4), 1))
    with pytest.raises(ImageError, match=r"g\.png: the model expects 4 channels"):
        read_image_for_model(path, (4, 4, 4))


def test_feature_model_rejects_images(tmp_path):
    path = _save(tmp_path, "g.png", Image.new("L", (4, 4), 1))
    with pytest.raises(ConfigError, match="trained on feature vectors"):
        read_image_for_model(path, None)
