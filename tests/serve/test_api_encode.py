"""PNG data URLs of thumbnails and templates (imgcls.serve.encode)."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from imgcls.serve.encode import MAX_SIDE, png_data_url, to_uint8


def _decode(url: str) -> np.ndarray:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_uint8_images_round_trip_exactly():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(png_data_url(grey)), grey[..., 0])
    np.testing.assert_array_equal(_decode(png_data_url(rgb)), rgb)


def test_float_pixels_in_range_are_rounded_others_stretched():
    img = np.array([[0.4, 254.6], [10.0, 128.5]])[..., None]
    np.testing.assert_array_equal(to_uint8(img)[..., 0], [[0, 255], [10, 128]])
    weights = np.array([[-2.0, 0.0], [1.0, 2.0]])[..., None]
    np.testing.assert_array_equal(to_uint8(weights)[..., 0], [[0, 128], [191, 255]])
    # stretch=True maps any range, in-range floats included, to 0..255
    np.testing.assert_array_equal(to_uint8(img, stretch=True)[..., 0].min(), 0)
    assert to_uint8(img, stretch=True).max() == 255
    # constant and non-finite values give a valid image, never NaN casts
    assert not to_uint8(np.full((3, 3, 1), 7.5), stretch=True).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_uint8(np.array([[np.nan, np.inf], [-np.inf, 1.0]])[..., None], stretch=True)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("shape", [(1000, 200, 1), (64, 4000, 3)])
def test_large_images_are_shrunk_to_thumbnails(shape):
    img = np.zeros(shape, np.uint8)
    out = _decode(png_data_url(img))
    assert max(out.shape[:2]) == MAX_SIDE
    ratio = shape[0] / shape[1]
    assert abs(out.shape[0] / out.shape[1] - ratio) < 0.05 * ratio + 0.02


def test_other_channel_counts_show_the_first_channel():
    img = np.stack([np.full((4, 4), 9, np.uint8), np.full((4, 4), 200, np.uint8)], axis=2)
    np.testing.assert_array_equal(_decode(png_data_url(img)), np.full((4, 4), 9))
