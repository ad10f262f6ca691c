"""The features section's accuracy rows, on small synthetic feature rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: bench/

from bench.features import linear_accuracy  # noqa: E402


def _rows(seed=0, n=300, d=12):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    F = rng.normal(size=(n, d)).astype(np.float32) + y[:, None] * 0.8
    return F, y, np.arange(0, 240), np.arange(240, n)


def test_mirrored_scores_of_identical_rows_change_nothing():
    F, y, tr, va = _rows()
    row = linear_accuracy(F, y, tr, va, (1e-3,), "synthetic", mirrored_va=F[va])
    assert row["val_acc_mirrored"] == row["val_acc"] > 0.5


def test_mirrored_accuracy_is_the_mean_of_class_scores():
    from imgcls.linear import Softmax

    F, y, tr, va = _rows(1)
    other = F[va][::-1].copy()  # any second view of the validation rows
    row = linear_accuracy(F, y, tr, va, (1e-3,), "synthetic", mirrored_va=other)
    clf = Softmax(optimizer="lbfgs", standardize=True, reg=1e-3, epochs=300,
                  random_state=0).fit(F[tr], y[tr])
    mean = (clf.class_scores(F[va]) + clf.class_scores(other)) / 2
    assert row["val_acc_mirrored"] == float(np.mean(clf.classes_[mean.argmax(1)] == y[va]))
    assert "val_acc_mirrored" not in linear_accuracy(F, y, tr, va, (1e-3,), "synthetic")


def test_transform_floors_add_up_on_small_shapes():
    from bench.features import N_SPEED, transform_floors

    (row,) = transform_floors(k=16, d=8, patches=9, n_images=2, repeats=1)
    assert row["row"] == "floor" and f"{N_SPEED} images" in row["what"]
    assert 0 < row["sgemm_s"] and 0 < row["sqrt_s"]
    assert row["floor_s"] == row["sgemm_with_whitening_s"] + row["sqrt_s"]
