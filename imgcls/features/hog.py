"""``HOG``: histograms of oriented gradients (Dalal and Triggs, CVPR 2005).

The computation is scikit-image's ``skimage.feature.hog`` on a greyscale image,
step for step, so that the two agree to float32 rounding (tested):

1. grey = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma) in float64, or the one
   channel of a greyscale image;
2. central differences ``g[i+1] - g[i-1]`` along rows and columns, zero on the
   image border;
3. each pixel votes its gradient magnitude into one of ``orientations`` unsigned
   bins over [0, 180) degrees (hard binning, no interpolation), summed over
   square cells of ``pixels_per_cell`` pixels and divided by the cell area;
   pixels right or below the last whole cell are left out;
4. every ``cells_per_block`` x ``cells_per_block`` window of cells (stride one
   cell) is normalised (``block_norm``, epsilon 1e-5) and all blocks are
   concatenated in (block row, block column, cell row, cell column, bin) order.

Two details follow scikit-image's Cython code exactly: the bin boundaries are
float32 multiples of ``float32(180 / orientations)``, and a cell's sum is
accumulated in float32.  One numba kernel does all four steps, one image per
iteration, images spread over the cores.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from numba import njit, prange
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from .._progress import track
from .._validation import Int, Interval
from ..config import MAX_WORKING_MEMORY
from ._images import batch_rows, check_images, check_same_shape, image_schema, n_threads

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
_NORM_CODE = {name: i for i, name in enumerate(BLOCK_NORMS)}
#: scikit-image's epsilon in the block normalisation.
_EPS = 1e-5
#: Dalal and Triggs' clipping value of L2-Hys.
_HYS_CLIP = 0.2
#: ITU-R BT.601 luma weights, R, G, B.
LUMA = (0.299, 0.587, 0.114)


def grey_float64(X: np.ndarray) -> np.ndarray:
    """The greyscale image HOG works on, (n, H, W) float64, from (n, H, W, C) ``uint8``.

    One channel is taken as it is; three are combined with the BT.601 weights
    ``LUMA`` (in this order of operations, which the kernel repeats).
    """
    X = np.asarray(X)
    if X.ndim == 3:
        return X.astype(np.float64)
    if X.shape[3] == 1:
        return X[..., 0].astype(np.float64)
    return X[..., 0] * LUMA[0] + X[..., 1] * LUMA[1] + X[..., 2] * LUMA[2]


def bin_bounds(orientations: int) -> np.ndarray:
    """Lower bin edges in degrees (orientations + 1 of them), as scikit-image computes them."""
    step = np.float32(180.0 / orientations)
    return np.array([np.float32(step * np.float32(i)) for i in range(orientations + 1)],
                    dtype=np.float64)


def _out_matches(attrs, dims, params):
    """``n_features_out_`` is what the parameters give on ``image_shape_`` (a model file
    cannot make ``transform`` write past its output rows)."""
    shape, n_out = attrs.get("image_shape_"), attrs.get("n_features_out_")
    params = params or {}
    cell, block, bins = (params.get(k) for k in ("pixels_per_cell", "cells_per_block",
                                                 "orientations"))
    if not (isinstance(shape, tuple) and len(shape) >= 2
            and all(isinstance(v, Integral) for v in (cell, block, bins))):
        return None
    nb = [s // cell - block + 1 for s in shape[:2]]
    if min(nb) < 1:
        return "image_shape_", f"{shape} holds no block of {block}x{block} cells of {cell} pixels"
    if n_out != nb[0] * nb[1] * block * block * bins:
        return "n_features_out_", (f"is {n_out}, but the parameters give "
                                   f"{nb[0] * nb[1] * block * block * bins} on {shape}")
    return None


@njit(cache=True, nogil=True)
def _hog_one(img, cell, block, nbins, bounds, norm, out):
    h, w, c = img.shape
    grey = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            if c == 1:
                grey[i, j] = img[i, j, 0]
            else:
                grey[i, j] = (img[i, j, 0] * 0.299 + img[i, j, 1] * 0.587
                              + img[i, j, 2] * 0.114)
    ncr = h // cell
    ncc = w // cell
    hist = np.zeros((ncr, ncc, nbins), dtype=np.float32)
    step = 180.0 / nbins
    rad2deg = 180.0 / math.pi
    for i in range(ncr * cell):
        for j in range(ncc * cell):
            gr = 0.0
            gc = 0.0
            if 0 < i < h - 1:
                gr = grey[i + 1, j] - grey[i - 1, j]
            if 0 < j < w - 1:
                gc = grey[i, j + 1] - grey[i, j - 1]
            mag = math.hypot(gc, gr)
            ang = (math.atan2(gr, gc) * rad2deg) % 180.0
            b = min(int(ang / step), nbins - 1)
            while b > 0 and ang < bounds[b]:
                b -= 1
            while b < nbins and ang >= bounds[b + 1]:
                b += 1
            if b >= nbins:  # at or above float32(180): in no bin, as in scikit-image
                continue
            # float32 accumulation, as scikit-image's ``cell_hog``
            hist[i // cell, j // cell, b] = np.float32(hist[i // cell, j // cell, b] + mag)
    area = np.float32(cell * cell)
    nbr = ncr - block + 1
    nbc = ncc - block + 1
    k = 0
    vals = np.empty(block * block * nbins)
    for br in range(nbr):
        for bc in range(nbc):
            m = 0
            for r in range(br, br + block):
                for cc in range(bc, bc + block):
                    for o in range(nbins):
                        vals[m] = np.float32(hist[r, cc, o] / area)
                        m += 1
            if norm == 0 or norm == 1:  # L1, L1-sqrt
                s = 0.0
                for m in range(vals.size):
                    s += abs(vals[m])
                for m in range(vals.size):
                    v = vals[m] / (s + 1e-5)
                    out[k + m] = math.sqrt(v) if norm == 1 else v
            else:  # L2, L2-Hys
                s = 0.0
                for m in range(vals.size):
                    s += vals[m] * vals[m]
                d = math.sqrt(s + 1e-10)
                if norm == 2:
                    for m in range(vals.size):
                        out[k + m] = vals[m] / d
                else:
                    s2 = 0.0
                    for m in range(vals.size):
                        vals[m] = min(vals[m] / d, 0.2)
                        s2 += vals[m] * vals[m]
                    d2 = math.sqrt(s2 + 1e-10)
                    for m in range(vals.size):
                        out[k + m] = vals[m] / d2
            k += vals.size


@njit(parallel=True, cache=True, nogil=True)
def _hog_batch(X, cell, block, nbins, bounds, norm, out):
    for n in prange(X.shape[0]):
        _hog_one(X[n], cell, block, nbins, bounds, norm, out[n])


class HOG(TransformerMixin, BaseEstimator):
    """Histograms of oriented gradients on a greyscale image, with block normalisation.

    The defaults are the course's (8x8-pixel cells, 9 unsigned orientation bins
    on greyscale) with Dalal and Triggs' 2x2-cell blocks and L2-Hys: a 32x32
    image gives 3x3 blocks x 4 cells x 9 bins = 324 features.  Equal to
    ``skimage.feature.hog(grey, orientations, (p, p), (b, b), block_norm)`` on
    ``grey_float64(images)``, up to float32 rounding.

    Parameters
    ----------
    orientations : int, default=9
        Unsigned orientation bins over [0, 180) degrees.
    pixels_per_cell : int, default=8
        Side of a square cell in pixels.
    cells_per_block : int, default=2
        Side of a square normalisation block in cells.
    block_norm : {"L2-Hys", "L2", "L1", "L1-sqrt"}, default="L2-Hys"
    working_memory : float, optional
        MiB for the images converted at a time; None uses the global setting.
    n_jobs : int, optional
        Threads; None or -1 uses every core.

    Attributes
    ----------
    n_features_in_ : int
        H * W * C of the images seen by ``fit``.
    image_shape_ : tuple of int
        (H, W, C) of those images; ``transform`` needs the same shape.
    n_features_out_ : int
    """

    _parameter_constraints = {
        "orientations": [Interval(Integral, 1, 360, closed="both")],
        "pixels_per_cell": [Interval(Integral, 1, None, closed="left")],
        "cells_per_block": [Interval(Integral, 1, None, closed="left")],
        "block_norm": [StrOptions(set(BLOCK_NORMS))],
        "working_memory": [Interval(Real, 0, MAX_WORKING_MEMORY, closed="right"), None],
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
    }
    _learned_attribute_schema = image_schema(n_features_out_=Int(min=1)).extend(
        rules=(_out_matches,))

    def __init__(self, orientations=9, pixels_per_cell=8, cells_per_block=2,
                 block_norm="L2-Hys", working_memory=None, n_jobs=None):
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm
        self.working_memory = working_memory
        self.n_jobs = n_jobs

    def _check(self, X):
        side = self.pixels_per_cell * self.cells_per_block
        X = check_images(X, name="HOG", min_size=(side, side),
                         what=f"{self.cells_per_block}x{self.cells_per_block} cells of "
                              f"{self.pixels_per_cell}x{self.pixels_per_cell} pixels")
        if X.shape[3] not in (1, 3):
            raise ValueError(f"HOG expects greyscale or RGB images (1 or 3 channels); got "
                             f"{X.shape[3]} channels")
        return X

    def _n_out(self, h, w):
        nb = [(s // self.pixels_per_cell) - self.cells_per_block + 1 for s in (h, w)]
        return nb[0] * nb[1] * self.cells_per_block ** 2 * self.orientations

    def fit(self, X, y=None):
        """Check the images and record their shape (HOG learns nothing else).

        Parameters
        ----------
        X : ndarray of shape (n, H, W, C) or (n, H, W), uint8
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._check(X)
        self.image_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        self.n_features_out_ = self._n_out(*X.shape[1:3])
        return self

    def transform(self, X):
        """HOG descriptors of the images.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, C) or (n, H, W), uint8

        Returns
        -------
        ndarray of shape (n, n_features_out_), float32
        """
        check_is_fitted(self)
        self._validate_params()
        X = self._check(X)
        check_same_shape(X, self.image_shape_, "HOG")
        n, h, w, _ = X.shape
        out = np.empty((n, self.n_features_out_), dtype=np.float32)
        bounds = bin_bounds(self.orientations)
        # the kernel's temporaries per image: the float64 grey copy and the histograms
        rows = batch_rows(8.0 * h * w + 4.0 * self.n_features_out_, self.working_memory,
                          minimum=64)
        from ..neighbors.search import threads

        with threads(n_threads(self.n_jobs)):
            for s in track(range(0, n, rows), "HOG", total=-(-n // rows),
                           disable=None if n > rows else True):
                _hog_batch(X[s:s + rows], self.pixels_per_cell, self.cells_per_block,
                           self.orientations, bounds, _NORM_CODE[self.block_norm],
                           out[s:s + rows])
        return out
