"""The content of each figure, and a ValueError naming the argument for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from imgcls.plots import (PNG_SIGNATURE, figure_png_bytes, plot_confusion, plot_cv_curve,
                          plot_retrievals, plot_templates, plot_training_curves)


# ------------------------------------------------------------------ cross-validation curve

def _cv_table(metrics=("l1", "l2"), ks=(1, 3, 5, 10, 50), weights=("uniform",), folds=5):
    rng = np.random.default_rng(0)
    table = []
    for m in metrics:
        for w in weights:
            for k in ks:
                scores = list(0.9 - 0.001 * k + rng.normal(0, 0.01, folds))
                table.append({"metric": m, "k": k, "weights": w, "fold_scores": scores,
                              "mean": float(np.mean(scores)), "std": float(np.std(scores))})
    return table


def test_cv_curve_one_axes_one_curve_per_metric():
    table = _cv_table()
    fig = plot_cv_curve(table, title="CV on digits")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "CV on digits"
    assert ax.get_xlabel().startswith("k") and ax.get_ylabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["l1", "l2"]
    # one scatter (a dot per fold) per row of the table
    offsets = [c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 5]
    assert len(offsets) == len(table)
    all_scores = sorted(s for row in table for s in row["fold_scores"])
    assert np.allclose(sorted(np.concatenate([o[:, 1] for o in offsets])), all_scores)
    # the k axis spans 1..50, so it is logarithmic with a tick at every k
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3", "5", "10", "50"]
    assert figure_png_bytes(fig).startswith(PNG_SIGNATURE)


def test_cv_curve_line_through_means():
    table = _cv_table(metrics=("l2",), ks=(1, 2, 3))
    ax = plot_cv_curve(table).axes[0]
    line = ax.get_lines()[0]
    # errorbar's line holds an object array in matplotlib 3.8-3.10
    assert np.allclose(np.asarray(line.get_ydata(), dtype=float), [r["mean"] for r in table])
    assert ax.get_xscale() == "linear"


def test_cv_curve_several_weightings_get_their_own_curves():
    fig = plot_cv_curve(_cv_table(weights=("uniform", "distance")))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["l1, uniform", "l1, distance", "l2, uniform", "l2, distance"]


@pytest.mark.parametrize("table, message", [
    ([], "table: has no rows"),
    ({"metric": "l2"}, "table: expected a list"),
    ([{"metric": "l2", "k": 1, "mean": 0.9, "std": 0.0}], r"table\[0\]: missing key\(s\) 'fold_scores'"),
    ([{"metric": "l2", "k": 0, "fold_scores": [0.9], "mean": 0.9, "std": 0.0}], r"table\[0\]\['k'\]"),
    ([{"metric": "l2", "k": 1, "fold_scores": [0.9], "mean": "high", "std": 0.0}], r"table\[0\]\['mean'\]"),
    ([{"metric": "l2", "k": 1, "fold_scores": [], "mean": 0.9, "std": 0.0}], r"fold_scores"),
    ([{"metric": "l2", "k": 1, "fold_scores": [np.nan], "mean": 0.9, "std": 0.0}], r"fold_scores"),
])
def test_cv_curve_bad_table(table, message):
    with pytest.raises(ValueError, match=message):
        plot_cv_curve(table)


# ------------------------------------------------------------------ templates

def _image_arrays(fig):
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes]


@pytest.mark.parametrize("shape, image_ndim", [
    ((4, 6, 5, 3), 3),   # colour images
    ((4, 6, 5, 1), 2),   # grey with a channel axis
    ((4, 6, 5), 2),      # grey
    ((4, 49), 2),        # flat, 49 = 7*7 -> square grey
    ((4, 48), 3),        # flat, 48 = 3*4*4 -> square colour
    ((4, 50), 2),        # flat, not an image -> heat-map strip (1 x 50)
])
def test_templates_one_image_per_class(shape, image_ndim):
    rng = np.random.default_rng(1)
    T = rng.normal(size=shape)
    classes = ["cat", "dog", "ship", "frog"]
    fig = plot_templates(T, classes, title="W rows")
    assert len(fig.axes) == 4
    assert fig.get_suptitle() == "W rows"
    arrays = _image_arrays(fig)
    assert all(a.ndim == image_ndim for a in arrays)
    if shape == (4, 50):
        assert arrays[0].shape == (1, 50)
        assert [ax.get_ylabel() for ax in fig.axes] == classes
    else:
        assert [ax.get_title() for ax in fig.axes] == classes
    # min-max per template: every template uses the full 0..255 range
    for a in arrays:
        assert a.dtype == np.uint8 and a.min() == 0 and a.max() == 255


def test_templates_global_scale_and_constant_template():
    T = np.stack([np.zeros((3, 3)), np.linspace(0, 1, 9).reshape(3, 3), 2 * np.ones((3, 3))])
    per = _image_arrays(plot_templates(T, ["a", "b", "c"]))
    assert np.all(per[0] == 128) and np.all(per[2] == 128)  # constant -> mid grey
    assert per[1].min() == 0 and per[1].max() == 255
    glob = _image_arrays(plot_templates(T, ["a", "b", "c"], scale="global"))
    assert np.all(glob[0] == 0) and np.all(glob[2] == 255)
    assert glob[1].max() == 128


def test_templates_explicit_image_shape():
    T = np.arange(2 * 12, dtype=float).reshape(2, 12)
    arrays = _image_arrays(plot_templates(T, ["a", "b"], image_shape=(3, 4)))
    assert arrays[0].shape == (3, 4)
    with pytest.raises(ValueError, match="image_shape"):
        plot_templates(T, ["a", "b"], image_shape=(5, 5))


@pytest.mark.parametrize("templates, classes, message", [
    (np.zeros((3, 4, 4)), ["a", "b"], "templates and classes: 3 templates but 2 class names"),
    (np.zeros((3, 4, 4, 5)), ["a", "b", "c"], "templates: images must have 1 or 3 channels"),
    (np.full((2, 9), np.nan), ["a", "b"], "templates: contains NaN"),
    (np.zeros(9), ["a"], "templates: expected a 2-D or 3-D or 4-D array"),
    (np.zeros((2, 9)), [], "classes: is empty"),
    (np.array([["x"] * 4] * 2), ["a", "b"], "templates: expected numbers"),
])
def test_templates_bad_input(templates, classes, message):
    with pytest.raises(ValueError, match=message):
        plot_templates(templates, classes)


def test_templates_bad_scale():
    with pytest.raises(ValueError, match="scale: must be"):
        plot_templates(np.zeros((2, 4)), ["a", "b"], scale="log")


# ------------------------------------------------------------------ retrievals

def _retrieval_data(nq=3, nt=40, n_classes=4, shape=(8, 8)):
    rng = np.random.default_rng(2)
    Xt = rng.integers(0, 256, size=(nt, *shape), dtype=np.uint8)
    yt = np.arange(nt) % n_classes
    Xq = rng.integers(0, 256, size=(nq, *shape), dtype=np.uint8)
    yq = np.arange(nq) % n_classes
    ind = np.array([rng.permutation(nt)[:12] for _ in range(nq)])
    return Xq, yq, Xt, yt, ind


def test_retrievals_grid_and_frames():
    Xq, yq, Xt, yt, ind = _retrieval_data()
    classes = ["zero", "one", "two", "three"]
    fig = plot_retrievals(Xq, yq, Xt, yt, ind, classes, n_neighbors=10)
    assert len(fig.axes) == 3 * 11
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].get_title() == "query"
    assert fig.axes[1].get_title() == "#1" and fig.axes[10].get_title() == "#10"
    for i in range(3):
        assert fig.axes[i * 11].get_ylabel() == classes[yq[i]]
        for j in range(10):
            ax = fig.axes[i * 11 + 1 + j]
            t = ind[i, j]
            colour = to_hex(ax.spines["top"].get_edgecolor())
            # the shown image is the neighbour's
            assert np.array_equal(np.asarray(ax.images[0].get_array()), Xt[t])
            if yt[t] == yq[i]:
                assert colour == "#1a9850" and ax.get_xlabel() == ""
            else:
                assert colour == "#d73027" and ax.get_xlabel() == classes[yt[t]]
    assert figure_png_bytes(fig).startswith(PNG_SIGNATURE)


def test_retrievals_colour_and_flat_images():
    Xq, yq, Xt, yt, ind = _retrieval_data(shape=(6, 6, 3))
    fig = plot_retrievals(Xq, yq, Xt, yt, ind, list("abcd"), n_neighbors=4)
    assert len(fig.axes) == 3 * 5
    assert np.asarray(fig.axes[0].images[0].get_array()).shape == (6, 6, 3)
    flat = plot_retrievals(Xq.reshape(3, -1).astype(float), yq, Xt.reshape(40, -1).astype(float),
                           yt, ind, list("abcd"), n_neighbors=2)
    assert np.asarray(flat.axes[0].images[0].get_array()).shape == (6, 6, 3)


@pytest.mark.parametrize("change, message", [
    ({"y_query": np.array([0, 1])}, "X_query and y_query and neighbor_ind: lengths differ"),
    ({"y_train": np.zeros(39, int)}, "X_train and y_train: lengths differ"),
    ({"neighbor_ind": np.zeros((3, 5), int)}, "neighbor_ind: has 5 columns, fewer than n_neighbors=10"),
    ({"neighbor_ind": np.full((3, 10), 40)}, r"neighbor_ind: indices must lie in 0\.\.39"),
    ({"neighbor_ind": np.zeros((3, 10))}, "neighbor_ind: expected integer indices"),
    ({"y_query": np.array([0, 1, 9])}, r"y_query: class indices must lie in 0\.\.3"),
    ({"y_train": np.full(40, "a")}, "y_train: expected numbers"),
    ({"X_query": np.zeros((3, 7, 7), np.uint8)}, "X_query and X_train: image shapes differ"),
    ({"X_query": np.zeros((3, 10))}, "X_query: rows of 10 values are not square images"),
    ({"n_neighbors": 0}, "n_neighbors: must be a positive integer"),
    ({"classes": "abcd"}, "classes: expected a sequence"),
])
def test_retrievals_bad_input(change, message):
    Xq, yq, Xt, yt, ind = _retrieval_data()
    kwargs = dict(X_query=Xq, y_query=yq, X_train=Xt, y_train=yt, neighbor_ind=ind,
                  classes=list("abcd"), n_neighbors=10)
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        plot_retrievals(**kwargs)


# ------------------------------------------------------------------ confusion matrix

def test_confusion_normalised_and_annotated():
    cm = np.array([[5, 5, 0], [0, 10, 0], [0, 0, 0]])
    fig = plot_confusion(cm, ["a", "b", "c"])
    assert len(fig.axes) == 2  # matrix and colour bar
    ax = fig.axes[0]
    assert "row-normalised" in ax.get_title()
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    shown = np.asarray(ax.images[0].get_array())
    assert np.allclose(shown, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])  # empty row stays 0
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and texts[:3] == ["0.50", "0.50", "0.00"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_confusion_counts_and_many_classes():
    cm = np.array([[5, 1], [2, 7]])
    ax = plot_confusion(cm, ["a", "b"], normalize=False, title="Counts").axes[0]
    assert [t.get_text() for t in ax.texts] == ["5", "1", "2", "7"]
    assert ax.get_title() == "Counts (counts)"
    big = plot_confusion(np.eye(25) * 3, [f"c{i}" for i in range(25)])
    assert len(big.axes[0].texts) == 0  # too many classes for numbers


@pytest.mark.parametrize("cm, classes, message", [
    (np.zeros((2, 3)), ["a", "b"], "cm: must be square"),
    (np.zeros((3, 3)), ["a", "b"], "cm and classes: cm is 3x3 but there are 2 class names"),
    (-np.eye(2), ["a", "b"], "cm: has negative entries"),
    (np.full((2, 2), np.inf), ["a", "b"], "cm: contains NaN or infinite"),
    (np.zeros(4), ["a", "b"], "cm: expected a 2-D array"),
])
def test_confusion_bad_input(cm, classes, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion(cm, classes)


# ------------------------------------------------------------------ training curves

def _history(val=True):
    return [{"epoch": e, "loss": 2.0 / (e + 1), "train_acc": 0.5 + 0.04 * e,
             "val_acc": (0.5 + 0.03 * e) if val else None} for e in range(1, 6)]


def test_training_curves_panels():
    fig = plot_training_curves(_history(), title="softmax")
    assert len(fig.axes) == 2
    ax_loss, ax_acc = fig.axes
    assert fig.get_suptitle() == "softmax"
    assert ax_loss.get_ylabel() == "loss" and ax_acc.get_ylabel() == "accuracy"
    assert ax_loss.get_xlabel() == "epoch"
    assert np.allclose(ax_loss.get_lines()[0].get_ydata(), [2.0 / (e + 1) for e in range(1, 6)])
    assert [t.get_text() for t in ax_acc.get_legend().get_texts()] == ["training", "validation"]


def test_training_curves_without_validation():
    fig = plot_training_curves(_history(val=False))
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["training"]
    no_key = [{k: v for k, v in h.items() if k != "val_acc"} for h in _history()]
    assert len(plot_training_curves(no_key).axes[1].get_lines()) == 1


@pytest.mark.parametrize("history, message", [
    ([], "history: has no epochs"),
    ([{"epoch": 1, "train_acc": 0.5}], r"history\[0\]: missing 'loss'"),
    ([{"epoch": 1, "loss": float("nan"), "train_acc": 0.5}], r"history\[0\]\['loss'\]: must be finite"),
    ([{"epoch": 1, "loss": 1.0, "train_acc": "x"}], r"history\[0\]\['train_acc'\]: expected a number"),
    ({"epoch": 1}, "history: expected a list"),
    ([3], r"history\[0\]: expected a dict"),
])
def test_training_curves_bad_input(history, message):
    with pytest.raises(ValueError, match=message):
        plot_training_curves(history)
