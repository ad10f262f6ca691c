"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no network).

The original pixel values are 0..16 (counts of set pixels in 4x4 blocks of a
32x32 bitmap).  By default they are rescaled to 0..255 as ``(v * 255 + 8) // 16``
(rounded; 0 -> 0, 16 -> 255) so that the set looks like every other image set to
the image pipeline (uint8, full range); ``rescale=False`` keeps 0..16.

There is no official test split: a stratified split with ``test_size=0.2`` and
``seed=0`` (scikit-learn's ``train_test_split``) gives 1437 training and 360
test images, the same on every machine.
"""

from __future__ import annotations

import numpy as np

from .base import Dataset, check_options, stratified_split

DEFAULT_TEST_SIZE = 0.2
DEFAULT_SEED = 0


def load_digits(root=None, download: bool = False, *, test_size: float = DEFAULT_TEST_SIZE,
                seed: int = DEFAULT_SEED, rescale: bool = True, **options) -> Dataset:
    """The 8x8 digits as images of shape (n, 8, 8, 1) uint8.

    Parameters
    ----------
    root, download : ignored
        The data ship with scikit-learn.
    test_size : float, default 0.2
        Fraction of each class held out as the test split.
    seed : int, default 0
        Seed of the stratified split.
    rescale : bool, default True
        Map 0..16 to 0..255 (``(v * 255 + 8) // 16``); False keeps 0..16.

    Returns
    -------
    Dataset
        ``X_train`` (1437, 8, 8, 1) and ``X_test`` (360, 8, 8, 1) with the defaults.
    """
    check_options("digits", options, set())
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    raw = bunch.images.astype(np.int64)  # float64 0..16, exactly integral
    pixels = (raw * 255 + 8) // 16 if rescale else raw
    X = pixels.astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    tr, te = stratified_split(y, test_size, seed, "digits")
    scale = "rescaled 0..16 -> 0..255" if rescale else "values 0..16"
    return Dataset(
        name="digits", X_train=X[tr], y_train=y[tr], X_test=X[te], y_test=y[te],
        classes=[str(i) for i in range(10)],
        source=(f"scikit-learn {_sklearn_version()} load_digits (bundled, {scale}); "
                f"stratified split test_size={test_size}, seed={seed}"),
    )


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__

