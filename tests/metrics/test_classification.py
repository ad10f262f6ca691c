"""imgcls.metrics against scikit-learn, and each kind of bad input."""

import numpy as np
import pytest
from sklearn import metrics as skm

from imgcls.metrics import confusion_matrix, per_class_accuracy, top_k_accuracy


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    n, c = 300, 7
    y = rng.integers(0, c, n)
    scores = rng.normal(size=(n, c))
    scores[np.arange(n), y] += 1.0  # better than chance, not perfect
    ranked = np.argsort(-scores, axis=1, kind="stable")
    return y, scores, ranked, c


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_matches_sklearn(scored, k):
    y, scores, ranked, c = scored
    expected = skm.top_k_accuracy_score(y, scores, k=k, labels=np.arange(c))
    assert top_k_accuracy(y, ranked, k) == pytest.approx(expected)
    assert top_k_accuracy(y, ranked[:, :k]) == pytest.approx(expected)  # k defaults to all columns


def test_top1_is_accuracy_and_1d_ranked(scored):
    y, _, ranked, _ = scored
    assert top_k_accuracy(y, ranked[:, 0], 1) == pytest.approx(skm.accuracy_score(y, ranked[:, 0]))


def test_top_k_with_string_labels():
    y = np.array(["cat", "dog", "cat"])
    ranked = np.array([["dog", "cat"], ["dog", "cat"], ["dog", "bird"]])
    assert top_k_accuracy(y, ranked, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(y, ranked, 2) == pytest.approx(2 / 3)


def test_confusion_matrix_matches_sklearn(scored):
    y, _, ranked, c = scored
    pred = ranked[:, 0]
    np.testing.assert_array_equal(confusion_matrix(y, pred, c),
                                  skm.confusion_matrix(y, pred, labels=np.arange(c)))
    np.testing.assert_allclose(confusion_matrix(y, pred, c, normalize="true"),
                               skm.confusion_matrix(y, pred, labels=np.arange(c), normalize="true"))
    assert confusion_matrix(y, pred, c).dtype == np.int64


def test_confusion_matrix_keeps_absent_classes():
    y = np.array([0, 0, 1])
    pred = np.array([0, 1, 1])
    cm = confusion_matrix(y, pred, 4)
    assert cm.shape == (4, 4) and cm.sum() == 3
    norm = confusion_matrix(y, pred, 4, normalize="true")
    np.testing.assert_allclose(norm[0], [0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(norm[2:], 0)  # no samples -> zeros, as scikit-learn does


def test_per_class_accuracy_matches_recall(scored):
    y, _, ranked, c = scored
    pred = ranked[:, 0]
    np.testing.assert_allclose(per_class_accuracy(y, pred, c),
                               skm.recall_score(y, pred, labels=np.arange(c), average=None))


def test_per_class_accuracy_absent_class_is_nan():
    acc = per_class_accuracy([0, 0, 1], [0, 1, 1], 3)
    np.testing.assert_allclose(acc[:2], [0.5, 1.0])
    assert np.isnan(acc[2])


@pytest.mark.parametrize("call, match", [
    (lambda: top_k_accuracy([0, 1], [[0], [1]], 2), "k=2 exceeds"),
    (lambda: top_k_accuracy([0, 1], [[0], [1]], 0), "k must be a positive integer"),
    (lambda: top_k_accuracy([0, 1], [[0], [1], [2]], 1), "3 rows but y_true has 2"),
    (lambda: top_k_accuracy([[0, 1]], [[0], [1]], 1), "y_true must be 1-D"),
    (lambda: top_k_accuracy([], np.zeros((0, 1)), 1), "y_true is empty"),
    (lambda: confusion_matrix([0, 1], [0, 3], 3), r"y_pred holds class indices outside 0\.\.2"),
    (lambda: confusion_matrix([0, -1], [0, 1], 3), "y_true holds class indices outside"),
    (lambda: confusion_matrix([0, 1], [0, 1, 1], 3), "differ in length"),
    (lambda: confusion_matrix([0, 1], [0, 1], 0), "n_classes must be a positive integer"),
    (lambda: confusion_matrix([0, 1], [0, 1], 2, normalize="all"), "normalize must be None or 'true'"),
    (lambda: confusion_matrix([0.5, 1], [0, 1], 2), "integer class indices"),
    (lambda: per_class_accuracy([0, 1], [0, 5], 2), "y_pred holds class indices outside"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.filterwarnings("ignore:A single label was found")  # the sklearn oracle's
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6).flatmap(lambda c: st.tuples(
    st.just(c), st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)),
                         min_size=1, max_size=40))))
def test_confusion_and_per_class_property(case):
    c, pairs = case
    y, pred = np.array(pairs).T
    cm = confusion_matrix(y, pred, c)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=np.arange(c)))
    assert cm.sum() == len(y)
    norm = confusion_matrix(y, pred, c, normalize="true")
    present = np.bincount(y, minlength=c) > 0
    np.testing.assert_allclose(norm.sum(axis=1)[present], 1.0)
    acc = per_class_accuracy(y, pred, c)
    np.testing.assert_allclose(acc[present], np.diag(norm)[present])
    assert np.isnan(acc[~present]).all()
    ranked = np.stack([pred] + [(pred + i) % c for i in range(1, c)], axis=1)
    tops = [top_k_accuracy(y, ranked, k) for k in range(1, c + 1)]
    assert tops == sorted(tops) and tops[-1] == 1.0 and tops[0] == np.mean(y == pred)
