"""imgcls run: in-process with small grids, one real subprocess run, and bad inputs."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls.cli import main
from imgcls.pipeline import study as study_mod


@pytest.fixture
def small_grids(monkeypatch):
    """Keep the in-process runs fast: a few k, one short linear configuration each."""
    from imgcls.pipeline import grids

    monkeypatch.setattr(grids, "KNN_KS", (1, 3))
    monkeypatch.setattr(grids, "linear_grid", lambda name, n: {
        "learning_rate": [0.05], "reg": [1e-4], "epochs": [3]})
    monkeypatch.setattr(study_mod, "_figures", lambda *a, **kw: {})


def test_run_json(tmp_path, capsys, small_grids):
    out = tmp_path / "rep"
    assert main(["run", "--models", "knn,softmax", "--folds", "3", "--seed", "2",
                 "--out", str(out), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results["models"]) == {"knn", "softmax"}
    assert results["seed"] == 2 and results["folds"] == 3
    assert results["models"]["knn"]["params"]["k"] in (1, 3)
    assert (out / "report.html").is_file() and (out / "models" / "softmax.safetensors").is_file()


def test_run_table(tmp_path, capsys, small_grids):
    out = tmp_path / "rep"
    assert main(["run", "--models", "knn", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test top-1" in text and "knn" in text
    assert text.strip().splitlines()[-1] == f"report: {out / 'report.html'}"


@pytest.mark.parametrize("argv, match", [
    (["--models", "knn,tree"], "unknown model name(s) 'tree'"),
    (["--dataset", "nosuch"], "nosuch"),
    (["--folds", "1"], "folds must be an integer >= 2"),
    (["--seed", "-1"], "seed must be a non-negative integer"),
    (["--out", "{tmp}/blocker/rep"], "exists and is not a directory"),
    (["--dataset", "npz:{tmp}/missing.npz"], "missing.npz"),
])
def test_run_bad_input(tmp_path, capsys, argv, match):
    (tmp_path / "blocker").write_text("keep")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(["run", *argv, "--out" if "--out" not in argv else "--seed",
                 str(tmp_path / "rep") if "--out" not in argv else "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("imgcls: error:"), err
    assert match in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    assert (tmp_path / "blocker").read_text() == "keep"


def _entry_point():
    exe = shutil.which("imgcls")
    if exe is None:
        pytest.skip("the imgcls entry point is not installed (pip install -e .)")
    return exe


@pytest.mark.slow
def test_installed_entry_point_default_run(tmp_path):
    """The real thing: `imgcls run` on the digits, as a user types it, under 60 s."""
    exe = _entry_point()
    out = tmp_path / "report"
    t0 = time.perf_counter()
    proc = subprocess.run([exe, "run", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert elapsed < 60, f"imgcls run took {elapsed:.1f} s"
    assert proc.stdout.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["name"] == "digits"
    for name in ("knn", "svm", "softmax"):
        m = results["models"][name]
        assert {"params", "test_top1", "test_top5", "fit_time", "predict_time", "why"} <= set(m)
        assert m["test_top1"] > 0.9
        assert (out / m["model_file"]).is_file()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 8
    assert "http://" not in html.replace("http://www.w3.org", "")


def test_entry_point_error_is_one_line(tmp_path):
    exe = _entry_point()
    proc = subprocess.run([exe, "run", "--models", "nothing", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("imgcls: error: unknown model name(s) 'nothing'; "
                                   "choose from knn, svm, softmax")
    assert not (tmp_path / "r").exists()
