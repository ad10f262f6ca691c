"""KMeansFeatures: whitening, the triangle activation, a plain reference, bad input."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from imgcls._validation import validate_learned_attributes
from imgcls.features import KMeansFeatures
from imgcls.features.kmeans import pool_bounds
from imgcls.features.whitening import zca_fit


def _images(n=40, h=12, w=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, h // 3 + 1, w // 3 + 1, c)).repeat(3, 1).repeat(3, 2)
    noise = rng.integers(-20, 21, (n, h, w, c))
    return np.clip(base[:, :h, :w] + noise, 0, 255).astype(np.uint8)


def reference_transform(f, X):
    """Coates et al.'s extract_features.m in float64 NumPy, one image at a time."""
    p, g = f.patch_size, f.pool_grid
    C, M, P = (a.astype(np.float64) for a in (f.centroids_, f.mean_, f.whitening_))
    out = []
    for im in X:
        im = im[..., None] if im.ndim == 2 else im
        w = sliding_window_view(im.astype(np.float64), (p, p), axis=(0, 1))
        ph, pw = w.shape[:2]
        x = w.transpose(0, 1, 3, 4, 2).reshape(ph * pw, -1)
        x = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, ddof=1, keepdims=True)
                                                     + f.contrast_eps)
        x = (x - M) @ P
        z = np.sqrt(np.maximum((x ** 2).sum(1)[:, None] + (C ** 2).sum(1) - 2 * x @ C.T, 0))
        a = np.maximum(z.mean(1, keepdims=True) - z, 0).reshape(ph, pw, -1)
        rb, cb = pool_bounds(ph, g), pool_bounds(pw, g)
        out.append(np.concatenate([a[rb[i]:rb[i + 1], cb[j]:cb[j + 1]].sum((0, 1))
                                   for i in range(g) for j in range(g)]))
    return np.array(out)


def test_whitened_patches_have_identity_covariance():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    mix = q * np.linspace(5, 50, 12)  # correlated, every variance >> eps
    X = (rng.standard_normal((20000, 12)) @ mix + 5).astype(np.float32)
    mean, P = zca_fit(X, eps=0.1)
    W = (X - mean) @ P
    cov = np.cov(W, rowvar=False)
    np.testing.assert_allclose(cov, np.eye(12), atol=5e-3)
    # exactly: eigenvalue D of the covariance becomes D / (D + eps)
    D, V = np.linalg.eigh(np.cov(X.astype(np.float64), rowvar=False))
    np.testing.assert_allclose(cov, (V * (D / (D + 0.1))) @ V.T, atol=1e-4)
    np.testing.assert_allclose(P, P.T)
    # small variances are damped, not blown up: eigenvalue D becomes D / (D + eps)
    Y = X.copy()
    Y[:, 0] = rng.standard_normal(20000) * 0.1
    mean, P = zca_fit(Y, eps=0.1)
    assert np.linalg.eigvalsh(np.cov((Y - mean) @ P, rowvar=False)).min() == pytest.approx(
        0.01 / 0.11, rel=0.1)


def test_fitted_patches_are_whitened():
    X = _images(30)
    f = KMeansFeatures(n_centroids=5, n_patches=5000, max_iter=2, random_state=0).fit(X)
    from imgcls.features import _kmeans_kernels as kern
    A = np.empty((30 * 49, 108), np.float32)
    kern.all_patches(X, 6, 10.0, A)
    # n_patches >= the 30 x 49 positions: fit saw every patch, each once
    W = (A - f.mean_) @ f.whitening_
    np.testing.assert_allclose(W.mean(0), 0, atol=1e-3)
    D, V = np.linalg.eigh(np.cov(A.astype(np.float64), rowvar=False))
    D = np.maximum(D, 0)
    np.testing.assert_allclose(np.cov(W, rowvar=False), (V * (D / (D + 0.1))) @ V.T, atol=2e-3)
    # every direction with variance well above eps (0.1) comes out with variance ~1
    ev = np.linalg.eigvalsh(np.cov(W, rowvar=False))
    strong = np.sort(D) > 2
    assert strong.sum() > 5 and np.all((ev[strong] > 0.95) & (ev[strong] < 1.001))


def test_triangle_activation_is_nonnegative_and_about_half_zero():
    # images the size of a patch: one patch each, pool_grid 1, so a row is f(x)
    X = _images(400, 6, 6)
    f = KMeansFeatures(n_centroids=50, n_patches=400, pool_grid=1, max_iter=5,
                       random_state=0).fit(X)
    F = f.transform(X)
    assert F.shape == (400, 50) and F.dtype == np.float32
    assert F.min() >= 0
    zero = (F == 0).mean()
    assert 0.3 < zero < 0.7, zero
    # float32 |x|^2 + |c|^2 - 2 x.c cancels for a patch next to its centroid
    # (k-means saw these very patches), where sqrt magnifies the error
    np.testing.assert_allclose(F, reference_transform(f, X), rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("grid,shape", [(2, (12, 12, 3)), (3, (13, 11, 3)), (1, (9, 9, 1))])
def test_equals_the_reference(grid, shape):
    X = _images(30, *shape)
    f = KMeansFeatures(n_centroids=20, n_patches=3000, pool_grid=grid, max_iter=5,
                       random_state=0).fit(X)
    F = f.transform(X)
    R = reference_transform(f, X)
    assert F.shape == (30, grid * grid * 20) == (30, f.n_features_out_)
    np.testing.assert_allclose(F, R, rtol=1e-4, atol=1e-3 * np.abs(R).max())


def test_paper_quadrants():
    assert pool_bounds(27, 2).tolist() == [0, 14, 27]  # round(27 / 2) = 14 in MATLAB


def test_blocks_equal_all_at_once_and_seed_repeats():
    X = _images(50)
    f = KMeansFeatures(n_centroids=30, n_patches=2000, max_iter=3, random_state=1).fit(X)
    whole = f.transform(X)
    f.set_params(working_memory=0.05, n_jobs=2)  # one image a chunk
    np.testing.assert_array_equal(whole, f.transform(X))
    np.testing.assert_array_equal(whole[7:19], f.transform(X[7:19]))
    g = KMeansFeatures(n_centroids=30, n_patches=2000, max_iter=3, random_state=1).fit(X)
    np.testing.assert_array_equal(f.centroids_, g.centroids_)


def test_learned_attributes_validate():
    X = _images(10)
    f = KMeansFeatures(n_centroids=8, n_patches=500, max_iter=2, random_state=0).fit(X)
    attrs = {k: v for k, v in vars(f).items() if k.endswith("_")}
    validate_learned_attributes(KMeansFeatures, attrs, params=f.get_params())
    with pytest.raises(ValueError, match="patch_size=5"):
        validate_learned_attributes(KMeansFeatures, attrs, params={**f.get_params(),
                                                                   "patch_size": 5})
    bad = dict(attrs, centroids_=np.full_like(f.centroids_, np.nan))
    with pytest.raises(ValueError, match="centroids_"):
        validate_learned_attributes(KMeansFeatures, bad, params=f.get_params())


def test_more_centroids_than_patches():
    X = _images(2, 7, 7)  # 4 positions each: 8 patches
    with pytest.raises(ValueError, match=r"n_centroids=9 is larger than the number of patches \(8"):
        KMeansFeatures(n_centroids=9).fit(X)
    with pytest.raises(ValueError, match="n_centroids=50 is larger .*n_patches=40"):
        KMeansFeatures(n_centroids=50, n_patches=40).fit(_images(5))


@pytest.mark.parametrize("X,params,match", [
    (np.zeros((3, 5, 12, 3), np.uint8), {}, "at least 6x6 pixels"),
    (np.zeros((3, 12, 12, 3), np.int64), {}, "uint8"),
    (np.zeros((3, 8, 8, 3), np.uint8), {"pool_grid": 4}, "pool_grid=4 is finer"),
    (np.zeros((3, 8, 8, 3), np.uint8), {"n_centroids": 0}, "n_centroids"),
])
def test_bad_input(X, params, match):
    with pytest.raises(ValueError, match=match):
        KMeansFeatures(**params).fit(X)


def test_flat_images_give_finite_features():
    X = np.full((20, 8, 8, 3), 128, np.uint8)  # every patch constant: variance 0
    X[10:] = 7
    f = KMeansFeatures(n_centroids=2, n_patches=100, max_iter=3, random_state=0).fit(X)
    assert np.isfinite(f.transform(X)).all()
    with pytest.raises(ValueError, match="fitted on images of shape"):
        f.transform(np.zeros((2, 9, 9, 3), np.uint8))
