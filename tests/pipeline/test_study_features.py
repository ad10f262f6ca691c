"""The study with feature sets: end to end on a CIFAR subset, train-only fitting, keys."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from imgcls.cli import main
from imgcls.datasets import Dataset
from imgcls.errors import ConfigError
from imgcls.pipeline import run_study
from imgcls.pipeline import study as study_mod

CIFAR_TGZ = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-train" / \
    "cifar10-train-jpg.tar.gz"
#: Images per class taken from the archive: 30 x 10 classes keeps the run a few seconds.
PER_CLASS = 30


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    """A ``folder:`` tree of the first PER_CLASS JPEGs of each CIFAR-10 class."""
    if not CIFAR_TGZ.is_file():
        pytest.skip(f"the CIFAR-10 JPEG archive is not at {CIFAR_TGZ}")
    root = tmp_path_factory.mktemp("cifar")
    counts: dict[str, int] = {}
    with tarfile.open(CIFAR_TGZ, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or not parts[2].endswith(".jpg"):
                continue
            cls = parts[1]
            if counts.get(cls, 0) >= PER_CLASS:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            dest = root / cls / parts[2]
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(tar.extractfile(member).read())
    assert len(counts) == 10
    return root


@pytest.fixture
def small_grids(monkeypatch):
    from imgcls.pipeline import grids

    monkeypatch.setattr(grids, "KNN_KS", (1, 3))
    monkeypatch.setattr(grids, "linear_grid", lambda name, n: {
        "learning_rate": [0.05], "reg": [1e-4], "epochs": [3]})


def test_run_features_hog_color_end_to_end(cifar_folder, tmp_path, capsys, small_grids,
                                           monkeypatch):
    # the figures are drawn in test_figures_of_feature_rows (the kNN decision-region
    # pictures alone take seconds)
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})
    out = tmp_path / "rep"
    assert main(["run", "--dataset", f"folder:{cifar_folder}", "--features", "hog+color",
                 "--models", "knn,svm", "--folds", "3", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)  # stdout is pure JSON
    assert set(results["models"]) == {"knn", "svm"}  # one feature set: the plain keys
    for name, m in results["models"].items():
        assert m["features"] == "hog+color"
        assert 0.0 <= m["test_top1"] <= 1.0
        assert (out / m["model_file"]).is_file()
    # HOG (8x8 cells, 2x2 blocks, 9 bins) on 32x32: 3x3 blocks x 36 + 10 hue bins
    assert results["features"]["hog+color"]["n_features"] == 3 * 3 * 36 + 10
    assert results["features"]["hog+color"]["fit_transform_train"] > 0
    assert "features_hog+color" in results["timings"]
    # non-terminal stderr: plain stage lines with elapsed seconds
    lines = captured.err.strip().splitlines()
    assert any(line.startswith("[") and "s] features hog+color:" in line for line in lines)
    assert any("s] kNN: validation split of" in line for line in lines)

    # the saved model is the whole pipeline: predict runs it on an image file
    image = next(cifar_folder.glob("ship/*.jpg"))
    assert main(["predict", str(out / results["models"]["svm"]["model_file"]), str(image),
                 "--json", "--top", "3"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert len(pred["predictions"][0]["top"]) == 3
    assert pred["predictions"][0]["top"][0]["class"] in {
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
        "truck"}


def _tiny_images(n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset("tiny", rng.integers(0, 256, (n_train, 16, 16, 3), dtype=np.uint8),
                   np.arange(n_train, dtype=np.int64) % 2,
                   rng.integers(0, 256, (n_test, 16, 16, 3), dtype=np.uint8),
                   np.arange(n_test, dtype=np.int64) % 2, ["a", "b"], "test")


def test_several_feature_sets_get_prefixed_keys(tmp_path, small_grids, monkeypatch):
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})
    lines = []
    res = run_study(_tiny_images(), models="softmax", folds=2, out=tmp_path / "r",
                    features="pixels,hog+color", log=lines.append)
    assert any(line.startswith("hog+color/softmax: grid search") for line in lines), lines
    assert set(res["models"]) == {"pixels/softmax", "hog+color/softmax"}
    assert res["models"]["pixels/softmax"]["features"] == "pixels"
    assert res["features"]["pixels"]["n_features"] == 16 * 16 * 3
    assert res["models"]["pixels/softmax"]["feature_params"] == {"pixels": {}}
    assert set(res["models"]["hog+color/softmax"]["feature_params"]) == {"hog", "color"}
    assert (tmp_path / "r" / "models" / "hog+color_softmax.safetensors").is_file()


def test_figures_of_feature_rows(tmp_path, small_grids):
    """Figures and report with a feature set: templates over features, confusion matrices."""
    res = run_study(_tiny_images(), models="softmax", folds=2, out=tmp_path / "r",
                    features="hog+color")
    figures = json.loads((tmp_path / "r" / "results.json").read_text())["figures"]
    assert {"templates_softmax", "confusion_softmax"} <= set(figures)
    assert "retrievals" not in figures  # feature rows are not pictures
    html = (tmp_path / "r" / "report.html").read_text()
    assert "features_hog+color" in html and res["models"]["softmax"]["features"] == "hog+color"


def test_features_are_fitted_on_training_rows_only(tmp_path, small_grids, monkeypatch):
    """A spy: every fit of a feature transformer sees the selection's training rows only."""
    from imgcls.features import KMeansFeatures

    ds = _tiny_images(n_train=60)
    fit_rows, val_rows = study_mod._holdout_split(ds.y_train, 0)
    # test images carry 255 at pixel (0, 0) in channel 0, validation rows at
    # channel 1; the rows features may be fitted on carry neither
    ds.X_train[:, 0, 0, :2] = 0
    ds.X_train[val_rows, 0, 0, 1] = 255
    ds.X_test[:, 0, 0, 0] = 255
    allowed = {x.tobytes() for x in ds.X_train[fit_rows]}
    seen = []
    original = KMeansFeatures.fit

    def spy(self, X, y=None):
        seen.append(np.array(X, copy=True))
        return original(self, X, y)

    monkeypatch.setattr(KMeansFeatures, "fit", spy)
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})
    res = run_study(ds, models="knn,softmax", folds=2, out=tmp_path / "r", features="kmeans",
                    feature_params={"kmeans": {"n_centroids": 4, "n_patches": 200,
                                               "patch_size": 4}})
    assert seen, "KMeansFeatures.fit was never called"
    for X in seen:
        assert len(X) == len(fit_rows)
        assert all(x.tobytes() in allowed for x in X)
        assert not np.any(X[:, 0, 0, :2] == 255)
    # every model chose on that split: trained on its first part, scored on the rest
    for name in ("knn", "softmax"):
        sel = res["selection"][name]
        assert sel["method"] == "validation split"
        assert (sel["n_train"], sel["n_val"]) == (len(fit_rows), len(val_rows))
        assert "the features were fitted on its training part" in res["models"][name]["why"]


def test_selection_searches_views_of_the_feature_matrix(tmp_path, small_grids, monkeypatch):
    """The selection's subsets are row slices of the feature matrix, never copies of it."""
    from imgcls.selection import knn_cv
    from imgcls.selection.splits import contiguous_rows

    ds = _tiny_images(n_train=60)
    fit_rows, val_rows = study_mod._holdout_split(ds.y_train, 0)
    knn_views, linear_parts = [], []

    def rows_spy(X, rows):
        out = contiguous_rows(X, rows)
        knn_views.append(np.shares_memory(out, X))
        return out

    def search_spy(est, X, y, grid, X_val, y_val, **kw):
        linear_parts.append((X, y, X_val, y_val))
        return real_search(est, X, y, grid, X_val=X_val, y_val=y_val, **kw)

    real_search = study_mod.linear_search
    monkeypatch.setattr(knn_cv, "contiguous_rows", rows_spy)
    monkeypatch.setattr(study_mod, "linear_search", search_spy)
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})
    run_study(ds, models="knn,softmax", folds=2, out=tmp_path / "r", features="hog")
    assert knn_views and all(knn_views)
    (X, y, X_val, y_val), = linear_parts
    assert X.base is not None and X.base is X_val.base  # two slices of one matrix
    assert (len(X), len(X_val)) == (len(fit_rows), len(val_rows))
    # the parts hold the split's labels, each stratified
    assert np.array_equal(np.sort(y), np.sort(ds.y_train[fit_rows]))
    assert np.array_equal(np.sort(y_val), np.sort(ds.y_train[val_rows]))


def test_unknown_feature_name_fails_before_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown feature set 'sift'.*pixels, hog, color"):
        run_study(_tiny_images(), models="knn", out=tmp_path / "r", features="hog+sift")
    assert not (tmp_path / "r").exists()


def test_unknown_feature_name_cli_one_line(tmp_path, capsys):
    code = main(["run", "--features", "pixels,nope", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("imgcls: error:")
    assert "unknown feature set 'nope'" in err[0]


def test_features_on_feature_vectors_refused(tmp_path):
    rng = np.random.default_rng(0)
    ds = Dataset("vec", rng.random((20, 5)), np.arange(20, dtype=np.int64) % 2,
                 rng.random((6, 5)), np.arange(6, dtype=np.int64) % 2, ["a", "b"], "t")
    with pytest.raises(ConfigError, match="not images; --features needs images"):
        run_study(ds, models="knn", folds=2, out=tmp_path / "r", features="pixels")
    assert not (tmp_path / "r").exists()


def test_plain_run_logs_stage_lines(tmp_path, capsys, small_grids, monkeypatch):
    """Non-terminal stderr gets plain '[  1.2s] stage' lines; stdout stays pure JSON."""
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})
    assert main(["run", "--models", "knn", "--folds", "2", "--out", str(tmp_path / "r"),
                 "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    lines = captured.err.strip().splitlines()
    assert len(lines) >= 4
    for line in lines:
        stamp, _, text = line.partition("] ")
        assert stamp.startswith("[") and stamp.endswith("s") and text, line
        float(stamp[1:-1])
    assert any("kNN: 2-fold cross-validation" in line for line in lines)
    assert "\x1b[" not in captured.err  # no terminal styling in a log
