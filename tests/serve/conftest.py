"""Shared fixtures of the serving tests: small MNIST-like models saved to disk.

scikit-learn's bundled 8x8 digits (no network) are scaled up to 28x28 grey
with Pillow's bilinear filter, so the models have MNIST's input shape
(28, 28, 1) and uint8 pixels 0..255, and train in well under a second.
The models are trained once per session and saved with :func:`imgcls.save`
into a session temporary directory; tests that edit files copy them first.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

#: MNIST's image side.
SIDE = 28


def upscale(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """(n, h, w, 1) uint8 -> (n, side, side, 1) uint8, bilinear."""
    return np.stack([
        np.asarray(Image.fromarray(im[..., 0]).resize((side, side), Image.Resampling.BILINEAR))
        for im in images])[..., None]


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG file of one (H, W, 1) or (H, W, 3) uint8 image."""
    arr = np.asarray(image, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def to_png():
    """The :func:`png_bytes` helper (test modules here are not a package)."""
    return png_bytes


def _fit_quietly(model, data):
    # 30 L-BFGS iterations reach ~96 % test accuracy, plenty for these tests;
    # running to convergence would only slow the session down.
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data["X_train"], data["y_train"])


@pytest.fixture(scope="session")
def mnist_like():
    """The digits as a 28x28x1 data set: dict of X_train, y_train, X_test, y_test, classes."""
    from imgcls.datasets import load_dataset

    ds = load_dataset("digits")
    return {"X_train": upscale(ds.X_train), "y_train": ds.y_train,
            "X_test": upscale(ds.X_test), "y_test": ds.y_test,
            "classes": [f"digit {c}" for c in ds.classes]}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-models")


@pytest.fixture(scope="session")
def linear_model_path(mnist_like, model_dir):
    """A saved :class:`imgcls.linear.Softmax` (28x28x1 input, 10 named classes)."""
    import imgcls
    from imgcls.linear import Softmax

    model = Softmax(optimizer="lbfgs", epochs=30, reg=1e-3, random_state=0)
    _fit_quietly(model, mnist_like)
    return imgcls.save(model, model_dir / "digits-softmax.safetensors",
                       classes=mnist_like["classes"])


@pytest.fixture(scope="session")
def svm_model_path(mnist_like, model_dir):
    """A saved :class:`imgcls.linear.LinearSVM` (no predict_proba: scores are margins)."""
    import imgcls
    from imgcls.linear import LinearSVM

    model = LinearSVM(optimizer="lbfgs", epochs=30, reg=1e-3, random_state=0)
    _fit_quietly(model, mnist_like)
    return imgcls.save(model, model_dir / "digits-svm.safetensors")


@pytest.fixture(scope="session")
def knn_model_path(mnist_like, model_dir):
    """A saved :class:`imgcls.neighbors.KNearestNeighbor` (k=3, L2) over the 1437 digits."""
    import imgcls
    from imgcls.neighbors import KNearestNeighbor

    model = KNearestNeighbor(k=3, metric="l2").fit(mnist_like["X_train"], mnist_like["y_train"])
    return imgcls.save(model, model_dir / "digits-knn.safetensors",
                       classes=mnist_like["classes"])
