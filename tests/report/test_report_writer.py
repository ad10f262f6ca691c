"""write_report: a self-contained report.html and a strict results.json, both or neither."""

from __future__ import annotations

import base64
import functools
import json
import os
import re

import numpy as np
import pytest

from imgcls.plots import PNG_SIGNATURE, figure_png_bytes, plot_confusion, plot_training_curves
from imgcls.report import write_report


def _results():
    return {
        "dataset": {"name": "digits", "source": "embedded", "n_train": 30, "n_test": 9,
                    "n_classes": 3, "classes": ["zero", "one", "two"], "dtype": "uint8",
                    "image_shape": [8, 8, 1], "n_features": 64,
                    "counts": {"train": np.array([10, 10, 10]), "test": [3, 3, 3]}},
        "models": {
            "knn": {"params": {"k": np.int64(3), "metric": "l2", "weights": "uniform"},
                    "test_top1": np.float64(0.9712), "test_top5": 0.9991, "fit_time": 0.012,
                    "predict_time": 1.5, "why": "5-fold cross-validation: best mean accuracy",
                    "per_class_accuracy": [1.0, float("nan"), 0.5], "estimator": "KNearestNeighbor",
                    "confusion": np.array([[3, 0, 0], [0, 0, 0], [1, 0, 2]])},
            "svm": {"params": {"learning_rate": 1e-3, "reg": 5e-4, "epochs": 10},
                    "test_top1": 0.921, "test_top5": 0.99, "fit_time": 3.25, "predict_time": 0.002,
                    "why": "grid search on a validation split", "per_class_accuracy": [1.0, None, 0.5]},
            "softmax": {"params": {"learning_rate": 1e-3, "reg": 1e-4},
                        "test_top1": np.float32(0.925), "test_top5": 0.995, "fit_time": 2.5,
                        "predict_time": 0.003, "why": "grid search on a validation split"},
        },
        "selection": {"knn": {"table": [
            {"metric": "l2", "k": 1, "weights": "uniform", "fold_scores": [0.9, 0.95],
             "mean": 0.925, "std": 0.025}]}},
        "protocol": "test split used once",
        "timings": {"total": 12.5},
        "seed": 0,
    }


@functools.lru_cache(maxsize=None)
def _png(kind: str) -> bytes:
    # rendering takes most of the time here: render each picture once per session
    if kind == "training":
        history = [{"epoch": e, "loss": 1.0 / e, "train_acc": 0.5, "val_acc": None}
                   for e in (1, 2, 3)]
        return figure_png_bytes(plot_training_curves(history))
    return figure_png_bytes(plot_confusion(np.eye(2), ["a", "b"]))


def _figures():
    """A live Figure (rendered by write_report) and two PNGs given as bytes."""
    return {"confusion_knn": plot_confusion(np.eye(3), ["zero", "one", "two"]),
            "training_svm": _png("training"), "raw": _png("raw")}


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _strict_json(path):
    def reject(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def test_writes_both_files_and_returns_report_path(tmp_path):
    out = tmp_path / "new" / "dir"  # created with parents
    path = write_report(out, _results(), _figures())
    assert path == out / "report.html"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"]


def test_results_json_structure(tmp_path):
    write_report(tmp_path, _results(), _figures())
    data = _strict_json(tmp_path / "results.json")
    assert data["dataset"]["name"] == "digits"
    assert data["dataset"]["counts"]["train"] == [10, 10, 10]
    assert set(data["models"]) == {"knn", "svm", "softmax"}
    knn = data["models"]["knn"]
    assert knn["params"] == {"k": 3, "metric": "l2", "weights": "uniform"}
    assert knn["test_top1"] == pytest.approx(0.9712) and knn["test_top5"] == pytest.approx(0.9991)
    assert knn["per_class_accuracy"] == [1.0, None, 0.5]  # NaN -> null
    assert knn["confusion"] == [[3, 0, 0], [0, 0, 0], [1, 0, 2]]
    assert data["models"]["softmax"]["test_top1"] == pytest.approx(0.925)
    for m in data["models"].values():
        assert {"params", "test_top1", "test_top5"} <= set(m)
    assert set(data["figures"]) == {"confusion_knn", "training_svm", "raw"}
    assert "confusion matrix" in data["figures"]["confusion_knn"]


def test_html_embeds_every_figure_and_nothing_external(tmp_path):
    figs = _figures()
    path = write_report(tmp_path, _results(), figs)
    page = path.read_text(encoding="utf-8")
    images = _data_uris(page)
    assert len(images) == 3
    assert all(img.startswith(PNG_SIGNATURE) for img in images)
    assert images[2] == figs["raw"]  # bytes embedded unchanged, in the given order
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.count("<figcaption>") == 3


def test_html_contents(tmp_path):
    page = write_report(tmp_path, _results(), _figures()).read_text(encoding="utf-8")
    # results table: model names, accuracies, times
    for text in ("kNN", "Linear SVM", "Softmax", "0.9712", "0.9991", "0.9210", "1.50 s",
                 "3.25 s", "2.00 ms"):
        assert text in page, text
    # chosen hyperparameters and why
    assert "<code>k=3</code>" in page and "<code>metric=l2</code>" in page
    assert "5-fold cross-validation: best mean accuracy" in page
    assert "grid search on a validation split" in page
    # per-class accuracy, with a dash for the class absent from the test split
    assert "Per-class accuracy" in page
    assert re.search(r"<td>two</td>.*?0\.5000", page)
    assert "—" in page
    # data set summary and protocol
    assert "embedded" in page and "[8, 8, 1]" in page and "test split used once" in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_strings_from_data_are_escaped(tmp_path):
    res = _results()
    evil = '<script>alert("x")</script>'
    res["dataset"]["name"] = 'cats & "dogs" <img src=x>'
    res["dataset"]["classes"] = [evil, "one", "two"]
    res["dataset"]["source"] = "folder:/data/<b>photos</b>"
    res["models"]["knn"]["why"] = "because <b>bold</b>"
    res["models"]["knn"]["params"]["metric"] = "<l2>"
    res["models"]["svm"]["model_file"] = 'models/"svm".safetensors'
    figs = {"<bad key>": _png("raw")}
    page = write_report(tmp_path, res, figs, captions={"<bad key>": "a < b"}).read_text("utf-8")
    assert "<script" not in page and "<b>bold" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "cats &amp; &quot;dogs&quot; &lt;img src=x&gt;" in page
    assert "because &lt;b&gt;bold&lt;/b&gt;" in page
    assert "metric=&lt;l2&gt;" in page
    assert "models/&quot;svm&quot;.safetensors" in page
    assert "&lt;bad key&gt;" in page and "a &lt; b" in page
    # the JSON keeps the raw strings
    data = _strict_json(tmp_path / "results.json")
    assert data["dataset"]["classes"][0] == evil


def _old_report(tmp_path):
    write_report(tmp_path, _results(), {"raw": _png("raw")})
    return {p.name: p.read_bytes() for p in tmp_path.iterdir()}


def _assert_unchanged(tmp_path, before):
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_figure_that_fails_to_render_leaves_old_report(tmp_path, monkeypatch):
    before = _old_report(tmp_path)
    figs = _figures()

    def broken(*args, **kwargs):
        raise RuntimeError("cannot render")

    monkeypatch.setattr(figs["confusion_knn"], "savefig", broken)
    with pytest.raises(RuntimeError, match="cannot render"):
        write_report(tmp_path, _results(), figs)
    _assert_unchanged(tmp_path, before)


def test_figure_that_fails_to_render_leaves_no_report(tmp_path, monkeypatch):
    figs = _figures()
    monkeypatch.setattr(figs["confusion_knn"], "savefig",
                        lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(MemoryError):
        write_report(tmp_path / "out", _results(), figs)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_figure_value_is_named(tmp_path):
    before = _old_report(tmp_path)
    with pytest.raises(ValueError, match=r"figures\['cv'\]: bytes given are not a PNG"):
        write_report(tmp_path, _results(), {"cv": b"<html>"})
    with pytest.raises(ValueError, match=r"figures\['cv'\]: expected a matplotlib Figure"):
        write_report(tmp_path, _results(), {"cv": "cv.png"})
    with pytest.raises(ValueError, match="figures: expected a dict"):
        write_report(tmp_path, _results(), [b"x"])
    _assert_unchanged(tmp_path, before)


def test_write_failure_leaves_old_report_and_no_temp_files(tmp_path, monkeypatch):
    before = _old_report(tmp_path)
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second file cannot be written
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, _results(), _figures())
    _assert_unchanged(tmp_path, before)


def test_unwritable_output_directory_is_named(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    with pytest.raises(OSError, match="blocker"):
        write_report(blocker / "report", _results(), _figures())
    with pytest.raises(OSError, match="blocker"):
        write_report(blocker, _results(), _figures())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    assert blocker.read_text() == "a file, not a directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permission bits do not stop root")
def test_read_only_directory_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="ro"):
            write_report(ro, _results(), _figures())
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("results, error, message", [
    ([], ValueError, "results: expected a dict"),
    ({"models": {}}, ValueError, "results: missing 'dataset'"),
    ({"dataset": {}}, ValueError, "results: missing 'models'"),
    ({"dataset": "digits", "models": {}}, ValueError, r"results\['dataset'\]: expected a dict"),
    ({"dataset": {}, "models": {"knn": 0.9}}, ValueError, r"results\['models'\]\['knn'\]: expected a dict"),
    ({"dataset": {}, "models": {"knn": {"params": "k=1"}}}, ValueError, r"\['params'\]: expected a dict"),
    ({"dataset": {}, "models": {"knn": {"params": {"est": object()}}}}, TypeError,
     r"results\['models'\]\['knn'\]\['params'\]\['est'\]: a object cannot be written as JSON"),
])
def test_bad_results(tmp_path, results, error, message):
    before = _old_report(tmp_path)
    with pytest.raises(error, match=message):
        write_report(tmp_path, results, {})
    _assert_unchanged(tmp_path, before)


def test_minimal_results_and_no_figures(tmp_path):
    res = {"dataset": {"name": "x"}, "models": {"knn": {"params": {"k": 1}}}}
    page = write_report(tmp_path, res, None).read_text("utf-8")
    assert "<img" not in page and "kNN" in page
    assert _strict_json(tmp_path / "results.json")["models"]["knn"]["params"] == {"k": 1}


def test_to_jsonable_conversions():
    from pathlib import Path

    from imgcls.report import to_jsonable

    value = {1: (np.int32(2), np.bool_(True)), "p": Path("a/b"), "s": {3, 1},
             "a": np.arange(4).reshape(2, 2), "inf": float("inf"), "f": np.float16(0.5),
             "u": np.array(["x", "y"])}
    out = to_jsonable(value)
    assert out == {"1": [2, True], "p": "a/b", "s": [1, 3], "a": [[0, 1], [2, 3]],
                   "inf": None, "f": 0.5, "u": ["x", "y"]}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    with pytest.raises(TypeError, match=r"results\['o'\]: an array of dtype object"):
        to_jsonable({"o": np.array([None, 1], dtype=object)})


def test_permission_denied_names_the_directory(tmp_path, monkeypatch):
    # root ignores permission bits, so simulate the refusal where it happens
    import tempfile

    before = _old_report(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=f"directory '{tmp_path}' is not writable"):
        write_report(tmp_path, _results(), _figures())
    _assert_unchanged(tmp_path, before)
