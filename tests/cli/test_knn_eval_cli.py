"""imgcls knn-eval: a small synthetic features:DIR set, the files it writes, bad input."""

import json

import numpy as np
import pytest

from imgcls.cli import main
from imgcls.neighbors.dino import FIXED_SETTINGS_NOTE, knn_evaluate


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """features:DIR layout: 300 training and 80 test float16 vectors of 6 classes."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 12))
    d = tmp_path_factory.mktemp("feats")
    for split, n in (("train", 300), ("test", 80)):
        y = rng.integers(0, 6, n)
        X = centres[y] + 1.2 * rng.standard_normal((n, 12))
        np.save(d / f"X_{split}.npy", X.astype(np.float16))
        np.save(d / f"y_{split}.npy", y.astype(np.int64))
    (d / "classes.txt").write_text("".join(f"class <{i}>\n" for i in range(6)), encoding="utf-8")
    return d


def expected(features, ks, temperature=0.07):
    X_train = np.load(features / "X_train.npy")
    X_test = np.load(features / "X_test.npy")
    return knn_evaluate(X_train, np.load(features / "y_train.npy"), X_test,
                        np.load(features / "y_test.npy"), ks, temperature, progress=False)


def test_json_and_files(features, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["knn-eval", "--dataset", f"features:{features}", "--k", "20,5,10",
                 "--temperature", "0.1", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert printed == saved
    assert saved["kind"] == "knn-eval"
    ev = saved["evaluation"]
    assert ev["note"] == FIXED_SETTINGS_NOTE
    assert ev["params"]["ks"] == [5, 10, 20] and ev["params"]["temperature"] == 0.1
    ref = expected(features, [5, 10, 20], 0.1)
    assert ev["rows"] == ref["rows"]
    assert saved["dataset"]["n_train"] == 300 and saved["dataset"]["classes"][0] == "class <0>"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "not model selection" in page and "DINO" in page
    for row in ev["rows"]:
        assert f"{row['top1']:.4f}" in page and f"{row['top5']:.4f}" in page
    assert "<script" not in page and "http" not in page.split("</style>")[1]


def test_table_in_the_terminal(features, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["knn-eval", "--dataset", f"features:{features}", "--k", "1,7",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test top-1" in text and "test top-5" in text and "not model selection" in text
    assert f"report: {out / 'report.html'}" in text
    for row in expected(features, [1, 7])["rows"]:
        assert f"{row['top1']:.4f}" in text and f"{row['top5']:.4f}" in text


def test_approximate_search_reports_recall(features, tmp_path, capsys):
    pytest.importorskip("faiss")
    out = tmp_path / "eval"
    assert main(["knn-eval", "--dataset", f"features:{features}", "--k", "5,10",
                 "--algorithm", "ivf", "--nlist", "4", "--nprobe", "4", "--out", str(out)]) == 0
    assert "recall@k" in capsys.readouterr().out
    ev = json.loads((out / "results.json").read_text(encoding="utf-8"))["evaluation"]
    assert [r["recall"] for r in ev["rows"]] == [1.0, 1.0]  # every list probed: exact
    assert ev["rows"] == [dict(r, recall=1.0) for r in expected(features, [5, 10])["rows"]]
    assert "recall@k" in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("argv, message", [
    (["--k", "5,x"], "'x' is not an integer"),
    (["--k", "0,5"], "every k must be >= 1"),
    (["--k", "301"], "k=301 is larger than the training set"),
    (["--temperature", "0"], "temperature"),
    (["--nprobe", "3"], "--nprobe only apply to --algorithm ivf or hnsw"),
])
def test_bad_input_is_one_line(features, tmp_path, capsys, argv, message):
    out = tmp_path / "eval"
    assert main(["knn-eval", "--dataset", f"features:{features}", "--out", str(out),
                 *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgcls: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()  # nothing written


def test_missing_dataset_is_one_line(tmp_path, capsys):
    assert main(["knn-eval", "--dataset", f"features:{tmp_path / 'none'}",
                 "--out", str(tmp_path / "eval")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgcls: error: ") and err.count("\n") == 1


def test_sharded_features_equal_one_file(features, tmp_path, capsys):
    # training and test splits as shards (a ShardedArray each): the same numbers
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for split, cuts in (("train", [0, 120, 121, 300]), ("test", [0, 50, 80])):
        X = np.load(features / f"X_{split}.npy")
        y = np.load(features / f"y_{split}.npy")
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            np.save(sharded / f"X_{split}-{i:05d}.npy", X[a:b])
            np.save(sharded / f"y_{split}-{i:05d}.npy", y[a:b])
    assert main(["knn-eval", "--dataset", f"features:{sharded}", "--k", "3,9",
                 "--out", str(tmp_path / "eval"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["evaluation"]["rows"]
    assert rows == expected(features, [3, 9])["rows"]
