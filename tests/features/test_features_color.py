"""The hue histogram against the course's per-image ``color_histogram_hsv``."""

import matplotlib.colors
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imgcls.features import ColorHistogram


def color_histogram_hsv(im, nbin=10, xmin=0, xmax=255, normalized=True):
    """The course's code (assignment 1, features.py), verbatim but for names."""
    bins = np.linspace(xmin, xmax, nbin + 1)
    hsv = matplotlib.colors.rgb_to_hsv(im / xmax) * xmax
    imhist, bin_edges = np.histogram(hsv[:, :, 0], bins=bins, density=normalized)
    return imhist * np.diff(bin_edges)


def _images(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    X[:8] = X[:8, :, :, :1]                     # grey pixels: no hue
    X[8:16, :, :, 1] = X[8:16, :, :, 0]         # red and green tied for the maximum
    X[16:20] = rng.choice([0, 255], (4, 12, 12, 3)).astype(np.uint8)  # pure colours
    return X


@pytest.mark.parametrize("nbin", [10, 7, 32])
def test_equals_the_course(nbin):
    X = _images()
    F = ColorHistogram(nbin=nbin).fit_transform(X)
    R = np.stack([color_histogram_hsv(im, nbin) for im in X])
    assert F.dtype == np.float32 and F.shape == (len(X), nbin)
    np.testing.assert_allclose(F, R, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(F.sum(1), 1, rtol=1e-6)


def test_counts_when_not_normalised():
    X = _images(1)
    F = ColorHistogram(normalized=False).fit_transform(X)
    R = np.stack([color_histogram_hsv(im, normalized=False) / 25.5 for im in X])
    np.testing.assert_allclose(F, R, rtol=1e-6)
    assert np.all(F == np.round(F)) and np.all(F.sum(1) == 144)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, (1, 3, 4, 3)), st.integers(1, 40))
def test_any_pixels_match_the_course(X, nbin):
    F = ColorHistogram(nbin=nbin).fit_transform(X)
    np.testing.assert_allclose(F[0], color_histogram_hsv(X[0], nbin), rtol=1e-6, atol=1e-7)


def test_needs_rgb():
    with pytest.raises(ValueError, match="RGB"):
        ColorHistogram().fit(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ColorHistogram().fit(np.zeros((2, 8, 8, 3), np.float32))
