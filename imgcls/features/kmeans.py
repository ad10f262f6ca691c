"""``KMeansFeatures``: single-layer k-means features (Coates, Lee and Ng, AISTATS 2011).

``fit`` (the paper's ``kmeans_demo.m``):

1. ``n_patches`` random ``patch_size`` x ``patch_size`` patches of the training
   images, all channels, flattened to d = p * p * C values;
2. each patch normalised for brightness and contrast:
   ``(x - mean(x)) / sqrt(var(x) + contrast_eps)`` (var over the patch's d
   values with n - 1; the paper's epsilon 10 is for 0..255 pixels);
3. ZCA whitening with ``whiten_eps`` (0.1 in the paper's code), see
   :mod:`imgcls.features.whitening`;
4. ``n_centroids`` centroids by k-means on the whitened patches
   (:mod:`imgcls.features.lloyd`).

``transform`` (``extract_features.m``): every patch of every image at stride
1, normalised and whitened the same way; the "triangle" activation
``f_k(x) = max(0, mean_j(z_j) - z_k)`` with ``z_k = |x - c_k|``; and sums of
each activation over a ``pool_grid`` x ``pool_grid`` grid of patch positions
(2 x 2: the paper's four quadrants, split at ``round(rows / 2)``), so
``pool_grid**2 * n_centroids`` features.

The distances come from float32 matrix multiplies ``|x|^2 - 2 x.c + |c|^2`` of
a few images' patches at a time (the score block stays in the cache); a
numba kernel turns each score row into activations and pools them in one
read.  Each core runs its own chunk of images: its own one-thread sgemm, then
the kernel, so no core waits for another.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._progress import bar
from .._validation import Array, Int, Interval
from ..config import MAX_WORKING_MEMORY
from . import _kmeans_kernels as kern
from ._images import budget_bytes, check_images, check_same_shape, image_schema, n_threads
from .lloyd import kmeans
from .whitening import zca_fit

#: Patch rows per matrix multiply in ``transform``: a 2,048 x 1,600 float32 score
#: block is 13 MiB, so two cores' blocks stay in the 32 MiB last-level cache
#: that the kernel reads them back from, while the sgemm still runs at full
#: speed (its inner dimension, d = 108, is what limits it).
_SCORE_ROWS = 2048
#: Rows per k-means assignment block in ``fit``.
_KMEANS_ROWS = 8192


def _patch_dim_matches(attrs, dims, params):
    """The centroids' length is patch_size**2 * channels of the fitted images."""
    p = (params or {}).get("patch_size")
    shape = attrs.get("image_shape_")
    if isinstance(p, Integral) and isinstance(shape, tuple) and len(shape) == 3:
        if p * p * shape[2] != dims["patch_dim"]:
            return "centroids_", (f"has patches of {dims['patch_dim']} values, but "
                                  f"patch_size={p} on {shape[2]} channel(s) gives {p * p * shape[2]}")
        if p > min(shape[0], shape[1]):
            return "image_shape_", f"{shape} is smaller than patch_size={p}"
    return None


def pool_bounds(n: int, grid: int) -> np.ndarray:
    """First index of each of ``grid`` pooling cells along an axis of ``n`` patch positions, then n.

    ``round(n * g / grid)`` with halves rounded up (MATLAB's ``round``), so
    27 positions in 2 cells split 14 + 13 as in the paper's code.
    """
    return np.array([int(np.floor(n * g / grid + 0.5)) for g in range(grid + 1)], dtype=np.int64)


class KMeansFeatures(TransformerMixin, BaseEstimator):
    """Learned k-means features of image patches (Coates, Lee and Ng, 2011).

    Parameters
    ----------
    n_centroids : int, default=1600
        K, the number of centroids (features per pooling cell).
    patch_size : int, default=6
        Side of the square patches, in pixels.
    n_patches : int, default=400_000
        Random patches k-means is fitted on (the paper's number); capped at the
        number of patch positions in the training images.
    contrast_eps : float, default=10.0
        Added to each patch's variance before dividing by its square root.
    whiten_eps : float, default=0.1
        Added to the eigenvalues of the patch covariance in ZCA whitening (the
        paper's value).  Larger values amplify the low-variance directions
        less: on JPEG-compressed images, where those carry the compression
        noise, 1.0 did better (``bench/results/features.md``).
    pool_grid : int, default=2
        Activations are summed over a ``pool_grid`` x ``pool_grid`` grid of
        patch positions (2: the paper's four quadrants; 3 keeps more layout,
        for 2.25 x the features).
    max_iter : int, default=30
        Lloyd iterations of k-means at most.
    random_state : int, RandomState or None
        Seeds the patch positions and the k-means start.
    working_memory : float, optional
        MiB for the temporaries of one batch; None uses the global setting.
    n_jobs : int, optional
        Threads; None or -1 uses every core.

    Attributes
    ----------
    mean_ : ndarray of shape (d,), float32
        Mean of the contrast-normalised patches (d = patch_size**2 * C).
    whitening_ : ndarray of shape (d, d), float32
        The ZCA matrix P; a patch is whitened as ``(x - mean_) @ whitening_``.
    centroids_ : ndarray of shape (n_centroids, d), float32
        In whitened space.
    n_iter_ : int
        k-means iterations run.
    n_features_in_ : int
    image_shape_ : tuple of int
        (H, W, C) of the training images; ``transform`` needs the same shape.
    n_features_out_ : int
        ``pool_grid**2 * n_centroids``.
    """

    _parameter_constraints = {
        "n_centroids": [Interval(Integral, 1, None, closed="left")],
        "patch_size": [Interval(Integral, 1, None, closed="left")],
        "n_patches": [Interval(Integral, 2, None, closed="left")],
        "contrast_eps": [Interval(Real, 0, np.inf, closed="neither")],
        "whiten_eps": [Interval(Real, 0, np.inf, closed="neither")],
        "pool_grid": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "working_memory": [Interval(Real, 0, MAX_WORKING_MEMORY, closed="right"), None],
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
    }
    _learned_attribute_schema = image_schema(
        dims={"patch_dim": 1, "n_centroids": 1},
        mean_=Array(("patch_dim",), dtypes=("float32",), finite=True),
        whitening_=Array(("patch_dim", "patch_dim"), dtypes=("float32",), finite=True),
        centroids_=Array(("n_centroids", "patch_dim"), dtypes=("float32",), finite=True),
        n_iter_=Int(min=0),
        n_features_out_=Int(min=1),
    ).extend(rules=(_patch_dim_matches,))

    def __init__(self, n_centroids=1600, patch_size=6, n_patches=400_000, contrast_eps=10.0,
                 whiten_eps=0.1, pool_grid=2, max_iter=30, random_state=None,
                 working_memory=None, n_jobs=None):
        self.n_centroids = n_centroids
        self.patch_size = patch_size
        self.n_patches = n_patches
        self.contrast_eps = contrast_eps
        self.whiten_eps = whiten_eps
        self.pool_grid = pool_grid
        self.max_iter = max_iter
        self.random_state = random_state
        self.working_memory = working_memory
        self.n_jobs = n_jobs

    def _check(self, X):
        p = self.patch_size
        X = check_images(X, name="KMeansFeatures", min_size=(p, p),
                         what=f"patch_size={p}")
        grid = self.pool_grid
        ph, pw = X.shape[1] - p + 1, X.shape[2] - p + 1
        if grid > min(ph, pw):
            raise ValueError(f"KMeansFeatures: pool_grid={grid} is finer than the {ph}x{pw} "
                             f"patch positions of {X.shape[1]}x{X.shape[2]} images")
        return X

    # -------------------------------------------------------------- fit ---
    def fit(self, X, y=None):
        """Sample patches, whiten them and cluster them.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, C) or (n, H, W), uint8
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Images smaller than the patch, or fewer patches than centroids.

        Notes
        -----
        The sampled patches are the k-means training set and are held whole:
        n_patches x d float32 (165 MiB at the defaults on RGB images), beside
        the images; the assignment blocks stay within ``working_memory``.
        """
        self._validate_params()
        X = self._check(X)
        n, h, w, c = X.shape
        p = self.patch_size
        positions = n * (h - p + 1) * (w - p + 1)
        m = min(int(self.n_patches), positions)
        if self.n_centroids > m:
            raise ValueError(f"KMeansFeatures: n_centroids={self.n_centroids} is larger than "
                             f"the number of patches ({m}: n_patches={self.n_patches}, "
                             f"{n} image(s) with {positions} {p}x{p} patch positions in all)")
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        where = (rng.choice(positions, size=m, replace=False) if m == positions or m > positions // 4
                 else rng.integers(0, positions, size=m))
        img, rest = np.divmod(where, (h - p + 1) * (w - p + 1))
        ys, xs = np.divmod(rest, w - p + 1)
        patches = np.empty((m, p * p * c), dtype=np.float32)
        kern.some_patches(X, img, ys, xs, p, float(self.contrast_eps), patches)
        mean, P = zca_fit(patches, float(self.whiten_eps))
        mean32 = mean.astype(np.float32)
        P32 = P.astype(np.float32)
        for s in range(0, m, _KMEANS_ROWS):  # whiten in place, block by block
            block = patches[s:s + _KMEANS_ROWS]
            kern.subtract_row(block, mean32)
            block[...] = block @ P32
        rows = max(256, min(_KMEANS_ROWS, int(budget_bytes(self.working_memory)
                                              // (4 * self.n_centroids))))
        centroids, n_iter = kmeans(patches, int(self.n_centroids), int(self.max_iter), rng, rows)
        self.mean_ = mean32
        self.whitening_ = P32
        self.centroids_ = centroids
        self.n_iter_ = int(n_iter)
        self.image_shape_ = (int(h), int(w), int(c))
        self.n_features_in_ = int(h * w * c)
        self.n_features_out_ = int(self.pool_grid ** 2 * self.n_centroids)
        return self

    # -------------------------------------------------------- transform ---
    def transform(self, X):
        """Pooled triangle activations of every patch.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, C) or (n, H, W), uint8
            The shape ``fit`` saw.

        Returns
        -------
        ndarray of shape (n, pool_grid**2 * n_centroids), float32
            Cell-major: the K activations of the first pooling cell (top left),
            then the next cell along the row, ...
        """
        check_is_fitted(self)
        self._validate_params()
        X = self._check(X)
        check_same_shape(X, self.image_shape_, "KMeansFeatures")
        n, h, w, c = X.shape
        p = self.patch_size
        ph, pw = h - p + 1, w - p + 1
        per_image = ph * pw
        k, d = self.centroids_.shape
        grid = self.pool_grid
        out = np.zeros((n, grid * grid, k), dtype=np.float32)
        rb, cb = pool_bounds(ph, grid), pool_bounds(pw, grid)
        cc = np.einsum("ij,ij->i", self.centroids_, self.centroids_, dtype=np.float32)
        CT = np.ascontiguousarray(self.centroids_.T)
        mean, P = self.mean_, self.whitening_
        nw = min(n_threads(self.n_jobs), n)
        # images per chunk: a score block of about _SCORE_ROWS rows, and every
        # worker's patches, whitened patches and scores within the budget
        per_bytes = per_image * (8 * d + 4 * k)
        by_budget = int(budget_bytes(self.working_memory) // (nw * per_bytes))
        chunk = max(1, min(-(-_SCORE_ROWS // per_image), by_budget))
        eps = float(self.contrast_eps)
        local = threading.local()

        def work(s):
            b = min(chunk, n - s)
            if not hasattr(local, "A"):
                local.A = np.empty((chunk * per_image, d), dtype=np.float32)
                local.W = np.empty((chunk * per_image, d), dtype=np.float32)
                local.S = np.empty((chunk * per_image, k), dtype=np.float32)
            A, W, S = (a[:b * per_image] for a in (local.A, local.W, local.S))
            kern.all_patches(X[s:s + b], p, eps, A)  # nogil
            kern.subtract_row(A, mean)
            np.matmul(A, P, out=W)
            np.matmul(W, CT, out=S)
            kern.triangle_pool(S, W, cc, b, ph, pw, rb, cb, out[s:s + b])
            return b

        from threadpoolctl import threadpool_limits

        starts = range(0, n, chunk)
        with bar("k-means features", n, unit="images") as advance, \
                threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(nw) as pool:
            for b in pool.map(work, starts):
                advance(b)
        return out.reshape(n, grid * grid * k)
