"""The whole study on the bundled digits, with small grids so it stays fast."""

import json

import numpy as np
import pytest

import imgcls
from imgcls.errors import ConfigError
from imgcls.pipeline import evaluate_model, make_estimator, parse_models, rank_labels, run_study
from imgcls.pipeline import study as study_mod

FAST_LINEAR = {"svm": {"learning_rate": [1e-3, 1e-2], "reg": [1e-4], "epochs": [5]},
               "softmax": {"learning_rate": [1e-2], "reg": [1e-4, 1e-3], "epochs": [5]}}
FAST_KNN = {"ks": [1, 3, 5], "metrics": ["l1", "l2"], "weights": ["uniform", "distance"]}


@pytest.fixture(scope="module")
def digits():
    return imgcls.load_dataset("digits")


@pytest.fixture(scope="module")
def study(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "report"
    calls = {"select_X": [], "evaluate": []}
    mp = pytest.MonkeyPatch()
    real_cv, real_search, real_eval = (study_mod.knn_cross_validate, study_mod.linear_search,
                                       study_mod.evaluate_model)

    def cv(X, y, *a, **kw):
        calls["select_X"].append(np.asarray(X))
        return real_cv(X, y, *a, **kw)

    def search(est, X, y, *a, **kw):
        calls["select_X"].append(np.asarray(X))
        return real_search(est, X, y, *a, **kw)

    def evaluate(model, X, y, n_classes, *a, **kw):
        calls["evaluate"].append((type(model).__name__, len(calls["select_X"]), len(y)))
        return real_eval(model, X, y, n_classes, *a, **kw)

    mp.setattr(study_mod, "knn_cross_validate", cv)
    mp.setattr(study_mod, "linear_search", search)
    mp.setattr(study_mod, "evaluate_model", evaluate)
    try:
        results = run_study(digits, out=out, seed=0, knn_grid=FAST_KNN,
                            linear_grids=FAST_LINEAR, progress=False)
    finally:
        mp.undo()
    return results, out, calls


def test_results_and_files(study):
    results, out, _ = study
    assert set(results["models"]) == {"knn", "svm", "softmax"}
    for name, m in results["models"].items():
        assert {"params", "test_top1", "test_top5", "fit_time", "predict_time", "why",
                "per_class_accuracy", "confusion", "model_file"} <= set(m)
        assert 0.8 < m["test_top1"] <= m["test_top5"] <= 1.0
        assert len(m["per_class_accuracy"]) == 10
        assert np.asarray(m["confusion"]).sum() == 360
        assert (out / m["model_file"]).is_file()
    assert results["models"]["knn"]["test_top1"] > 0.95
    assert set(results["models"]["knn"]["params"]) == {"k", "metric", "weights"}
    assert results["models"]["knn"]["params"]["k"] in FAST_KNN["ks"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["models"]["knn"]["test_top1"] == results["models"]["knn"]["test_top1"]
    assert (out / "report.html").is_file() and results["report"].endswith("report.html")
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html


def test_saved_models_load_and_agree(study, digits):
    results, out, _ = study
    for name in ("knn", "softmax"):
        model = imgcls.load(out / results["models"][name]["model_file"])
        pred = rank_labels(model, digits.X_test, 1)[:, 0]
        assert np.mean(pred == digits.y_test) == pytest.approx(results["models"][name]["test_top1"])


def test_test_split_kept_apart(study, digits):
    _, _, calls = study
    train_rows = {r.tobytes() for r in digits.X_train.reshape(len(digits.X_train), -1)}
    # selection only ever saw training samples
    assert len(calls["select_X"]) == 3
    for X in calls["select_X"]:
        assert len(X) <= len(digits.y_train)
        assert all(r.tobytes() in train_rows for r in X.reshape(len(X), -1))
    # the test split is evaluated once per model, each after that model's selection
    assert [(n, after) for n, after, _ in calls["evaluate"]] == \
        [("KNearestNeighbor", 1), ("LinearSVM", 2), ("Softmax", 3)]
    assert all(n_test == 360 for _, _, n_test in calls["evaluate"])


def test_choice_is_the_cv_best(study):
    results, _, _ = study
    table = results["selection"]["knn"]["table"]
    best = max(r["mean"] for r in table)
    chosen = results["models"]["knn"]["params"]
    row = next(r for r in table if (r["metric"], r["k"], r["weights"]) ==
               (chosen["metric"], chosen["k"], chosen["weights"]))
    assert row["mean"] == pytest.approx(best)
    lin = results["selection"]["softmax"]
    assert len(lin["table"]) == 2
    assert results["models"]["softmax"]["params"] == max(
        lin["table"], key=lambda r: r["val_acc"])["params"]


def test_default_ks_clipped_to_fold_size(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})  # figures: tested above
    small = imgcls.datasets.Dataset(
        name="small", X_train=digits.X_train[:60], y_train=digits.y_train[:60],
        X_test=digits.X_test[:20], y_test=digits.y_test[:20], classes=digits.classes,
        source="first 60/20 digits")
    if np.bincount(small.y_train, minlength=10).min() < 5:
        pytest.skip("a class has fewer than 5 samples in the first 60")
    results = run_study(small, models="knn", out=tmp_path / "r", save_models=False,
                        progress=False)
    ks = results["selection"]["knn"]["ks"]
    assert max(ks) <= 48 and ks == [k for k in (1, 3, 5, 7, 10, 15, 20) if k <= 48]


def test_rank_labels_linear_matches_predict(study, digits):
    results, out, _ = study
    model = imgcls.load(out / results["models"]["svm"]["model_file"])
    np.testing.assert_array_equal(rank_labels(model, digits.X_test, 5)[:, 0],
                                  model.predict(digits.X_test))
    ev = evaluate_model(model, digits.X_test, digits.y_test, 10)
    assert ev["test_top1"] == pytest.approx(results["models"]["svm"]["test_top1"])


@pytest.mark.parametrize("name", ["svm", "softmax", "knn"])
def test_two_class_models_rank_and_evaluate(digits, name):
    # decision_function of a two-class linear model is 1-D (scikit-learn's
    # convention); ranking must still use both classes' scores
    keep_tr = digits.y_train < 2
    keep_te = digits.y_test < 2
    model = make_estimator(name).fit(digits.X_train[keep_tr], digits.y_train[keep_tr])
    ranked = rank_labels(model, digits.X_test[keep_te], 5)
    assert ranked.shape == (keep_te.sum(), 2)
    np.testing.assert_array_equal(ranked[:, 0], model.predict(digits.X_test[keep_te]))
    ev = evaluate_model(model, digits.X_test[keep_te], digits.y_test[keep_te], 2)
    assert ev["test_top1"] == pytest.approx(model.score(digits.X_test[keep_te],
                                                        digits.y_test[keep_te]))
    assert ev["test_top5"] == 1.0


# ---- bad input: a clear error, nothing written -------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(models="knn,forest"), ConfigError, "unknown model name.*'forest'"),
    (dict(models=""), ConfigError, "no model given"),
    (dict(folds=1), ConfigError, "folds must be an integer >= 2"),
    (dict(seed=-2), ConfigError, "seed must be a non-negative integer"),
    (dict(knn_grid={"ks": [1, 2000]}, models="knn"), ConfigError,
     r"k=2000 is larger than the training part of fold 0 \(1149 samples\)"),
    (dict(knn_grid={"kk": [1]}), ConfigError, "unknown kNN grid key"),
    (dict(models="svm", linear_grids={"svm": {"reg": [-1e-3], "learning_rate": [1e-3]}}),
     ConfigError, r"reg=-0\.001\): The 'reg' parameter of LinearSVM must be a float in the range \[0"),
    (dict(models="softmax", linear_grids={"softmax": {"kernel": ["rbf"]}}), ConfigError,
     r"unknown parameter\(s\) \['kernel'\]"),
    (dict(dataset="no-such-set"), ValueError, "no-such-set"),
])
def test_bad_input_writes_nothing(tmp_path, kwargs, error, match):
    out = tmp_path / "report"
    kwargs.setdefault("dataset", "digits")
    with pytest.raises(error, match=match):
        run_study(out=out, progress=False, **kwargs)
    assert not out.exists()


def test_out_path_under_a_file(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        run_study(out=blocker / "report", progress=False)
    assert blocker.read_text() == "keep me"


def test_out_dir_where_nothing_can_be_created_fails_before_any_work(tmp_path):
    # /proc refuses new entries even to root, for whom os.access always says yes
    import os
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc")
    with pytest.raises(PermissionError, match="cannot create anything in /proc"):
        run_study(out="/proc/imgcls-report", progress=False)
    assert not os.path.exists("/proc/imgcls-report")


def test_probe_directory_is_removed(tmp_path):
    from imgcls.pipeline.study import check_out_dir

    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_report(tmp_path, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(study_mod, "_figures", boom)
    out = tmp_path / "report"
    with pytest.raises(RuntimeError):
        run_study(models="knn", knn_grid={"ks": [1]}, out=out, progress=False)
    assert not out.exists()


def test_parse_and_make():
    assert parse_models(" KNN , softmax,knn") == ("knn", "softmax")
    assert make_estimator("knn", {"k": 7}).k == 7
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) kk for model 'knn'; valid: "):
        make_estimator("knn", {"kk": 7})
    with pytest.raises(ConfigError, match="unknown model name 'tree'"):
        make_estimator("tree")
