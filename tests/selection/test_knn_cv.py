"""kNN cross-validation from one search per fold: equal to refitting, and to scikit-learn."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier

from imgcls.errors import ConfigError
from imgcls.neighbors import KNearestNeighbor
from imgcls.selection import choose_best, knn_cross_validate, stratified_kfold

KS = [1, 2, 3, 5, 8, 12]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(y), 360, replace=False)
    # a little noise: no two distances are equal, so neighbour order is the same in
    # every tool and only vote ties (different documented rules) can differ
    X = X[idx] + rng.normal(scale=1e-3, size=(360, 64))
    return X, y[idx]


@pytest.fixture(scope="module")
def table(digits):
    X, y = digits
    return knn_cross_validate(X, y, KS, metrics=("l1", "l2"), weights=("uniform", "distance"),
                              folds=3, seed=0)


def test_table_format(table):
    assert len(table) == 2 * 2 * len(KS)
    for row in table:
        assert set(row) == {"metric", "k", "weights", "fold_scores", "mean", "std"}
        assert len(row["fold_scores"]) == 3
        assert row["mean"] == pytest.approx(np.mean(row["fold_scores"]))
        assert row["std"] == pytest.approx(np.std(row["fold_scores"]))
        assert 0.5 < row["mean"] <= 1.0
    assert [r["k"] for r in table[:len(KS)]] == KS
    assert (table[0]["metric"], table[0]["weights"]) == ("l1", "uniform")


def test_equals_refitting_each_combination(digits, table):
    X, y = digits
    splits = stratified_kfold(y, 3, 0)
    for row in table:
        for (tr, va), score in zip(splits, row["fold_scores"]):
            model = KNearestNeighbor(k=row["k"], metric=row["metric"], weights=row["weights"])
            expected = np.mean(model.fit(X[tr], y[tr]).predict(X[va]) == y[va])
            assert score == expected, row


def test_equals_refitting_with_distance_ties():
    # integer pixels: many tied distances; the (distance, index) order still makes
    # the first k columns of one search at max(k) the k-neighbour list
    X, y = load_digits(return_X_y=True)
    X, y = X[:240].astype(np.uint8), y[:240]
    table = knn_cross_validate(X, y, [1, 4, 7], metrics=("l1",), weights=("uniform",), folds=2)
    tr, va = stratified_kfold(y, 2, 0)[0]
    for row in table:
        model = KNearestNeighbor(k=row["k"], metric="l1").fit(X[tr], y[tr])
        assert row["fold_scores"][0] == np.mean(model.predict(X[va]) == y[va])


def _tie_rules_differ(neigh_y, n_classes):
    """Whether some sample has a vote tie that scikit-learn (smallest label among the
    tied) and imgcls (the tied class holding the nearest neighbour) resolve differently."""
    n = neigh_y.shape[0]
    counts = np.zeros((n, n_classes), dtype=int)
    np.add.at(counts, (np.repeat(np.arange(n), neigh_y.shape[1]), neigh_y.ravel()), 1)
    for i in range(n):
        tied = np.flatnonzero(counts[i] == counts[i].max())
        nearest_tied = next(c for c in neigh_y[i] if c in tied)
        if tied.size > 1 and nearest_tied != tied.min():
            return True
    return False


def test_matches_gridsearchcv_where_no_vote_tie(digits, table):
    X, y = digits
    splits = stratified_kfold(y, 3, 0)
    gs = GridSearchCV(KNeighborsClassifier(algorithm="brute"),
                      {"n_neighbors": KS, "p": [1, 2]}, cv=splits).fit(X, y)
    sk = {(("l1", "l2")[p - 1], k): m for p, k, m in zip(
        gs.cv_results_["param_p"], gs.cv_results_["param_n_neighbors"],
        gs.cv_results_["mean_test_score"])}
    # which (metric, k) have a vote tie resolved differently in some validation sample
    tied = set()
    for metric in ("l1", "l2"):
        for tr, va in splits:
            _, ind = KNearestNeighbor(k=max(KS), metric=metric).fit(X[tr], y[tr]).kneighbors(
                X[va], n_neighbors=max(KS))
            for k in KS:
                if _tie_rules_differ(y[tr][ind[:, :k]], 10):
                    tied.add((metric, k))
    compared = 0
    for row in table:
        key = (row["metric"], row["k"])
        if row["weights"] == "uniform" and key not in tied:
            assert row["mean"] == pytest.approx(sk[key], abs=1e-12), key
            compared += 1
    assert compared >= 2 and ("l1", 1) not in tied and ("l2", 1) not in tied


def test_matches_gridsearchcv_two_classes_odd_k(digits):
    # two classes and odd k: a vote cannot tie, so every mean must agree
    X, y = digits
    keep = np.isin(y, [3, 8])
    X2, y2 = X[keep], y[keep]
    ks = [1, 3, 5, 7, 9]
    splits = stratified_kfold(y2, 3, 1)
    table = knn_cross_validate(X2, y2, ks, metrics=("l1", "l2"), folds=splits)
    gs = GridSearchCV(KNeighborsClassifier(algorithm="brute"),
                      {"p": [1, 2], "n_neighbors": ks}, cv=splits).fit(X2, y2)
    sk = gs.cv_results_["mean_test_score"]  # ParameterGrid order: n_neighbors, then p fastest
    for row in table:
        i = ks.index(row["k"]) * 2 + ("l1", "l2").index(row["metric"])
        assert row["mean"] == pytest.approx(sk[i], abs=1e-12)


def test_matches_sklearn_per_sample_except_differing_ties(digits):
    X, y = digits
    splits = stratified_kfold(y, 3, 0)
    for metric, p in (("l1", 1), ("l2", 2)):
        for tr, va in splits:
            ours = KNearestNeighbor(k=max(KS), metric=metric).fit(X[tr], y[tr])
            _, ind = ours.kneighbors(X[va], n_neighbors=max(KS))
            for k in KS:
                theirs = KNeighborsClassifier(k, algorithm="brute", p=p).fit(X[tr], y[tr])
                same = np.array([not _tie_rules_differ(y[tr][ind[i:i + 1, :k]], 10)
                                 for i in range(len(va))])
                pred = ours.set_params(k=k).predict(X[va])
                np.testing.assert_array_equal(pred[same], theirs.predict(X[va])[same])


def test_image_input_and_seeded(digits):
    X, y = digits
    images = np.clip(np.round(X), 0, 16).astype(np.uint8).reshape(-1, 8, 8, 1)
    a = knn_cross_validate(images, y, [1, 3], metrics=("l2",), folds=3, seed=5)
    b = knn_cross_validate(images.reshape(len(y), -1), y, [1, 3], metrics=("l2",), folds=3, seed=5)
    c = knn_cross_validate(images, y, [1, 3], metrics=("l2",), folds=3, seed=6)
    assert a == b
    assert [r["fold_scores"] for r in a] != [r["fold_scores"] for r in c]


def test_explicit_folds_and_string_labels(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    splits = stratified_kfold(y, 3, 0)
    by_index = knn_cross_validate(X, y, [1, 3], metrics=("l1",), folds=3, seed=0)
    by_name = knn_cross_validate(X, names, [1, 3], metrics=("l1",), folds=splits)
    assert [r["fold_scores"] for r in by_index] == [r["fold_scores"] for r in by_name]


def test_k_larger_than_fold_training_part(digits):
    X, y = digits
    X_before = X.copy()
    with pytest.raises(ConfigError, match=r"k=300 is larger than the training part of fold 0 "
                                          r"\(240 samples\)"):
        knn_cross_validate(X, y, [1, 300], folds=3)
    np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize("ks, match", [
    ([], "ks is empty"),
    ([1, 0], r"^ks grid point 2 of 2 \(k=0\): The 'k' parameter of KNearestNeighbor must be "
             r"an int in the range \[1, inf\)\. Got 0 instead\.$"),
    ([-3], r"\(k=-3\): The 'k' parameter"),
    ([1.5], r"\(k=1\.5\): The 'k' parameter"),
    ([True], r"\(k=True\): The 'k' parameter"),
    (None, "ks must be a list of positive integers"),
])
def test_bad_ks(digits, ks, match):
    X, y = digits
    with pytest.raises(ConfigError, match=match):
        knn_cross_validate(X, y, ks)


def test_bad_folds_and_shapes(digits):
    X, y = digits
    with pytest.raises(ConfigError, match="folds must be an integer >= 2"):
        knn_cross_validate(X, y, [1], folds=1)
    tr, va = stratified_kfold(y, 3, 0)[0]
    with pytest.raises(ConfigError, match="fold 0: training and validation indices overlap"):
        knn_cross_validate(X, y, [1], folds=[(tr, np.r_[va, tr[:1]])])
    with pytest.raises(ConfigError, match="within 0..359"):
        knn_cross_validate(X, y, [1], folds=[(tr, np.r_[va, 999])])
    with pytest.raises(ConfigError, match="same n"):
        knn_cross_validate(X, y[:-1], [1])
    with pytest.raises(ConfigError, match="metrics must be a non-empty list"):
        knn_cross_validate(X, y, [1], metrics=())


def test_unknown_metric_is_an_error(digits):
    X, y = digits
    with pytest.raises(ConfigError, match=r"^kNN grid point 1 of 1 \(k=1, metric='l7', n_jobs=None, "
                                          r"temperature=0\.07, weights='uniform', "
                                          r"working_memory=None\): The 'metric' parameter"):
        knn_cross_validate(X, y, [1], metrics=("l7",), folds=3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights=("uniform", "gauss")), r"point 3 of 8 .*weights='gauss'.*The 'weights' parameter"),
    (dict(temperature=0.0), r"The 'temperature' parameter of KNearestNeighbor"),
    (dict(working_memory=-1.0), r"The 'working_memory' parameter"),
    (dict(n_jobs=0), r"The 'n_jobs' parameter"),
])
def test_every_grid_point_is_checked_before_any_search(digits, monkeypatch, kwargs, match):
    from imgcls.neighbors import KNearestNeighbor

    def no_fit(self, *args, **kw):
        raise AssertionError("a model was fitted before the grid was checked")

    monkeypatch.setattr(KNearestNeighbor, "fit", no_fit)
    X, y = digits
    with pytest.raises(ConfigError, match=match):
        knn_cross_validate(X, y, [1, 3], **kwargs)


def _row(metric, k, weights, mean):
    return {"metric": metric, "k": k, "weights": weights, "fold_scores": [mean], "mean": mean,
            "std": 0.0}


def test_choose_best_rule():
    rows = [_row("l1", 1, "uniform", 0.90), _row("l1", 5, "uniform", 0.95),
            _row("l2", 3, "distance", 0.95), _row("l2", 3, "uniform", 0.95 + 1e-15),
            _row("l1", 3, "uniform", 0.95 - 1e-15), _row("l1", 7, "uniform", 0.94)]
    best = choose_best(rows)
    # ties (within 1e-12) at 0.95: smallest k=3; then uniform before distance; then l1 first
    assert (best["metric"], best["k"], best["weights"]) == ("l1", 3, "uniform")
    assert choose_best(rows, metric_order=["l2", "l1"])["metric"] == "l2"
    assert choose_best([_row("l1", 9, "uniform", 0.8), _row("l1", 1, "uniform", 0.7)])["k"] == 9
    with pytest.raises(ConfigError, match="table is empty"):
        choose_best([])



def _many_classes(n_classes, n, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n, 3)).astype(np.float32)  # tied distances and votes
    y = np.arange(n) % n_classes
    folds = [(np.arange(0, n, 2), np.arange(1, n, 2)), (np.arange(1, n, 2), np.arange(0, n, 2))]
    return X, y, folds


def test_many_classes_equal_the_dense_votes():
    from imgcls.neighbors.vote import vote_rank, vote_scores

    n_classes = 300
    X, y, folds = _many_classes(n_classes, 1200)
    table = knn_cross_validate(X, y, [1, 5, 15], metrics=("l2",),
                               weights=("uniform", "distance", "softmax"), folds=folds,
                               progress=False)
    for (tr, va), i in zip(folds, range(2)):
        dist, ind = KNearestNeighbor(k=15, metric="l2").fit(X[tr], y[tr]).kneighbors(X[va])
        neigh_y = y[tr][ind]
        for row in table:
            k = row["k"]
            scores = vote_scores(neigh_y[:, :k], dist[:, :k], n_classes, row["weights"], 0.07,
                                 "l2")
            expected = np.mean(vote_rank(scores, neigh_y[:, :k])[:, 0] == y[va])
            assert row["fold_scores"][i] == expected, row


def test_many_classes_in_bounded_memory():
    # no (n_val x n_classes) array: one would take 4,000 x 4,000 x 8 = 128 MB
    from peak_memory import traced_peak

    X, y, folds = _many_classes(4000, 8000)
    knn_cross_validate(X, y, [1], metrics=("l2",), folds=folds, progress=False)  # compile
    with traced_peak() as peak:
        knn_cross_validate(X, y, [1, 5, 15], metrics=("l2",), weights=("uniform", "softmax"),
                           folds=folds, working_memory=8, progress=False)
    assert peak.bytes < 40 * 2**20
