"""``ColorHistogram``: a histogram of hue in HSV space, the course's colour feature.

The course's ``color_histogram_hsv(im, nbin=10, xmin=0, xmax=255, normalized=True)``
is, per image::

    hsv = matplotlib.colors.rgb_to_hsv(im / 255) * 255
    hist, edges = np.histogram(hsv[:, :, 0], bins=np.linspace(0, 255, nbin + 1), density=True)
    return hist * np.diff(edges)          # the share of pixels in each hue bin

The numba kernel here repeats matplotlib's hue arithmetic operation for
operation in float64 (max/min channel, the blue-over-green-over-red precedence
on ties, ``(h / 6) % 1``) and numpy's half-open bins (the last one closed), so
each pixel lands in the same bin as in the reference; a pixel with no
saturation has hue 0 (bin 0), as in matplotlib.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from numba import njit, prange
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._progress import track
from .._validation import Interval
from ..config import MAX_WORKING_MEMORY
from ._images import batch_rows, check_images, check_same_shape, image_schema, n_threads

#: The scale of the course's hue values (``rgb_to_hsv(im / xmax) * xmax``, xmax = 255).
_XMAX = 255.0


@njit(cache=True, nogil=True, inline="always")
def _hue_bin(R, G, B, edges, nbin):
    r = R / 255.0
    g = G / 255.0
    b = B / 255.0
    mx = max(r, g, b)
    delta = mx - min(r, g, b)
    h = 0.0
    if delta > 0:
        # matplotlib assigns red, then green, then blue, so the last match wins
        if b == mx:
            h = 4.0 + (r - g) / delta
        elif g == mx:
            h = 2.0 + (b - r) / delta
        else:
            h = (g - b) / delta
    x = ((h / 6.0) % 1.0) * 255.0
    k = min(max(int(x / edges[nbin] * nbin), 0), nbin - 1)
    while k > 0 and x < edges[k]:
        k -= 1
    while k < nbin - 1 and x >= edges[k + 1]:
        k += 1
    return k


@njit(parallel=True, cache=True, nogil=True)
def _hue_histograms(X, edges, nbin, normalized, out):
    n, h, w, _ = X.shape
    for i in prange(n):
        counts = np.zeros(nbin, dtype=np.int64)
        for y in range(h):
            for x in range(w):
                counts[_hue_bin(X[i, y, x, 0], X[i, y, x, 1], X[i, y, x, 2], edges, nbin)] += 1
        scale = 1.0 / (h * w) if normalized else 1.0
        for k in range(nbin):
            out[i, k] = counts[k] * scale


class ColorHistogram(TransformerMixin, BaseEstimator):
    """Histogram of the hue of each pixel (HSV), ``nbin`` equal bins over 0..255.

    Equal to the course's ``color_histogram_hsv`` (see the module docstring).

    Parameters
    ----------
    nbin : int, default=10
        Number of hue bins.
    normalized : bool, default=True
        Return the share of the image's pixels in each bin (sums to 1); False
        returns pixel counts.
    working_memory : float, optional
        MiB per batch; None uses the global setting.
    n_jobs : int, optional
        Threads; None or -1 uses every core.

    Attributes
    ----------
    n_features_in_ : int
    image_shape_ : tuple of int
        (H, W, 3) of the images seen by ``fit``.
    """

    _parameter_constraints = {
        "nbin": [Interval(Integral, 1, 4096, closed="both")],
        "normalized": ["boolean"],
        "working_memory": [Interval(Real, 0, MAX_WORKING_MEMORY, closed="right"), None],
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
    }
    _learned_attribute_schema = image_schema()

    def __init__(self, nbin=10, normalized=True, working_memory=None, n_jobs=None):
        self.nbin = nbin
        self.normalized = normalized
        self.working_memory = working_memory
        self.n_jobs = n_jobs

    def _check(self, X):
        X = check_images(X, name="ColorHistogram")
        if X.shape[3] != 3:
            raise ValueError(f"ColorHistogram needs RGB images (3 channels); got "
                             f"{X.shape[3]} channel(s)")
        return X

    def fit(self, X, y=None):
        """Check the images and record their shape.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, 3), uint8
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._check(X)
        self.image_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        return self

    def transform(self, X):
        """Hue histograms.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, 3), uint8

        Returns
        -------
        ndarray of shape (n, nbin), float32
        """
        check_is_fitted(self)
        self._validate_params()
        X = self._check(X)
        check_same_shape(X, self.image_shape_, "ColorHistogram")
        n = X.shape[0]
        edges = np.linspace(0.0, _XMAX, self.nbin + 1)
        out = np.empty((n, self.nbin), dtype=np.float32)
        rows = batch_rows(8.0 * self.nbin + X[0].nbytes, self.working_memory, minimum=64)
        from ..neighbors.search import threads

        with threads(n_threads(self.n_jobs)):
            for s in track(range(0, n, rows), "colour histogram", total=-(-n // rows),
                           disable=None if n > rows else True):
                _hue_histograms(X[s:s + rows], edges, self.nbin, bool(self.normalized),
                                out[s:s + rows])
        return out
