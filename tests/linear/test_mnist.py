"""A short run on the real MNIST (skipped when the data set is not there)."""

from pathlib import Path

import numpy as np
import pytest

from imgcls.linear import LinearSVM, Softmax

MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def mnist():
    if not MNIST.is_dir():
        pytest.skip(f"the real MNIST is not at {MNIST}")
    import imgcls

    return imgcls.load_dataset("mnist", root=MNIST)


@pytest.mark.parametrize("cls", [Softmax, LinearSVM])
def test_defaults_on_a_third_of_mnist(mnist, cls):
    X, y = mnist.X_train[:20000], mnist.y_train[:20000]
    est = cls(random_state=0).fit(X, y, X_val=mnist.X_test[:2000], y_val=mnist.y_test[:2000])
    assert est.score(mnist.X_test, mnist.y_test) > 0.88  # ~0.89-0.91 from a third of the data
    assert est.input_scale_ == 255.0 and est.templates_.shape == (10, 28, 28, 1)
    assert est.history_[-1]["val_acc"] > 0.88
    # the lecture's picture: the template of "1" likes the middle column more than the edges
    t1 = est.templates_[1, :, :, 0]
    assert t1[:, 12:16].mean() > t1[:, :4].mean()
    again = cls(random_state=0).fit(X, y)
    assert np.array_equal(again.W_, cls(random_state=0).fit(X, y).W_)
