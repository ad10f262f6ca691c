"""HOG against scikit-image's ``hog`` (the oracle), and its input checks."""

import numpy as np
import pytest

from imgcls.features import HOG
from imgcls.features.hog import bin_bounds, grey_float64

skimage_feature = pytest.importorskip("skimage.feature")


def _images(n, h, w, c, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    # smooth structure too (edges, flat areas, gradients exactly along an axis)
    X[0] = 0
    X[1, :, : w // 2] = 200
    X[2] = (np.arange(w) * 7 % 256).astype(np.uint8)[None, :, None]
    return X[..., 0] if c == 0 else X


def _reference(X, orientations, ppc, cpb, norm):
    return np.stack([skimage_feature.hog(g, orientations, (ppc, ppc), (cpb, cpb), block_norm=norm)
                     for g in grey_float64(X)]).astype(np.float32)


@pytest.mark.parametrize("norm", ["L2-Hys", "L2", "L1", "L1-sqrt"])
@pytest.mark.parametrize("orientations,ppc,cpb,shape", [
    (9, 8, 2, (32, 32, 3)),      # the defaults on CIFAR-sized images
    (9, 8, 3, (32, 32, 3)),      # scikit-image's default block
    (6, 5, 1, (23, 17, 3)),      # odd cell size, pixels outside the last cell
    (12, 4, 2, (16, 20, 1)),     # greyscale with a channel axis
])
def test_hog_equals_skimage(norm, orientations, ppc, cpb, shape):
    X = _images(12, *shape)
    hog = HOG(orientations=orientations, pixels_per_cell=ppc, cells_per_block=cpb,
              block_norm=norm).fit(X)
    F = hog.transform(X)
    R = _reference(X, orientations, ppc, cpb, norm)
    assert F.dtype == np.float32 and F.shape == R.shape == (12, hog.n_features_out_)
    np.testing.assert_allclose(F, R, rtol=1e-6, atol=1e-7)


def test_hog_greyscale_images_without_channel_axis():
    X = _images(5, 16, 16, 1)[..., 0]
    F = HOG().fit_transform(X)
    np.testing.assert_allclose(F, _reference(X, 9, 8, 2, "L2-Hys"), rtol=1e-6, atol=1e-7)
    assert F.shape == (5, 36)


def test_grey_is_bt601_luma():
    X = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(grey_float64(X)[0, 0], [0.299 * 255, 0.587 * 255, 0.114 * 255])


def test_bin_bounds_are_float32_multiples():
    b = bin_bounds(9)
    assert b[0] == 0 and b[-1] == 180 and np.all(np.diff(b) > 0) and b.size == 10


def test_blocks_equal_all_at_once():
    X = _images(50, 16, 16, 3, seed=3)
    whole = HOG().fit(X).transform(X)
    blocked = HOG(working_memory=0.01).fit(X).transform(X)  # ~64 images a batch at the minimum
    np.testing.assert_array_equal(whole, blocked)
    one = HOG(n_jobs=1).fit(X).transform(X)
    np.testing.assert_array_equal(whole, one)


@pytest.mark.parametrize("X,match", [
    (np.zeros((2, 15, 32, 3), np.uint8), "at least 16x16 pixels"),
    (np.zeros((2, 32, 32, 3), np.float64), "uint8"),
    (np.zeros((2, 32, 32, 2), np.uint8), "1 or 3 channels"),
    (np.zeros((2, 1024), np.uint8), r"\(n, H, W, C\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), "0 images"),
])
def test_hog_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        HOG().fit(X)


def test_hog_transform_needs_the_fitted_shape():
    hog = HOG().fit(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="fitted on images of shape"):
        hog.transform(np.zeros((2, 24, 24, 3), np.uint8))
