"""The DINO kNN evaluation: equal to a plain NumPy transcription of DINO's knn_classifier."""

import numpy as np
import pytest

from imgcls.errors import ConfigError
from imgcls.neighbors.dino import FIXED_SETTINGS_NOTE, knn_evaluate


def dino_knn_classifier(train_features, train_labels, test_features, test_labels, k, T,
                        num_classes):
    """DINO's eval_knn.py ``knn_classifier`` (one chunk), in NumPy float64.

    Features are L2-normalised as DINO's extraction does (``nn.functional.normalize``,
    eps 1e-12).  Returns the top-1 and top-5 counts (DINO turns them into percentages).
    """
    def normalize(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    train_features, test_features = normalize(train_features), normalize(test_features)
    batch_size = test_labels.shape[0]
    similarity = test_features @ train_features.T
    indices = np.argsort(-similarity, axis=1, kind="stable")[:, :k]  # similarity.topk(k)
    distances = np.take_along_axis(similarity, indices, axis=1)
    retrieved_neighbors = train_labels[indices]
    retrieval_one_hot = np.zeros((batch_size * k, num_classes))
    retrieval_one_hot[np.arange(batch_size * k), retrieved_neighbors.reshape(-1)] = 1
    distances_transform = np.exp(distances / T)
    probs = np.sum(retrieval_one_hot.reshape(batch_size, -1, num_classes)
                   * distances_transform.reshape(batch_size, -1, 1), axis=1)
    predictions = np.argsort(-probs, axis=1, kind="stable")
    correct = predictions == test_labels.reshape(-1, 1)
    top1 = int(correct[:, :1].sum())
    top5 = int(correct[:, :min(5, k)].sum())
    return top1, top5


def clustered(seed, n_classes, n_train, n_test, d=16, spread=1.3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d))
    y_train = rng.integers(0, n_classes, n_train)
    y_test = rng.integers(0, n_classes, n_test)
    X_train = centres[y_train] + spread * rng.standard_normal((n_train, d))
    X_test = centres[y_test] + spread * rng.standard_normal((n_test, d))
    return X_train.astype(np.float32), y_train, X_test.astype(np.float32), y_test


@pytest.mark.parametrize("n_classes, temperature", [(10, 0.07), (40, 0.07), (40, 0.5)])
def test_equals_dino_formula(n_classes, temperature):
    X_train, y_train, X_test, y_test = clustered(n_classes, n_classes, 800, 200)
    ks = [1, 3, 10, 20, 100]
    result = knn_evaluate(X_train, y_train, X_test, y_test, ks, temperature, progress=False)
    assert [r["k"] for r in result["rows"]] == ks
    for row in result["rows"]:
        top1, top5 = dino_knn_classifier(X_train.astype(np.float64), y_train,
                                         X_test.astype(np.float64), y_test, row["k"],
                                         temperature, n_classes)
        assert row["top1"] * 200 == pytest.approx(top1, abs=1e-9), row
        assert row["top5"] * 200 == pytest.approx(top5, abs=1e-9), row
    tops = [r["top1"] for r in result["rows"]]
    assert 0.2 < max(tops) < 1.0  # a non-trivial problem, so the comparison means something
    assert result["note"] == FIXED_SETTINGS_NOTE and "not model selection" in result["note"]
    assert result["params"] == {"metric": "cosine", "weights": "softmax",
                                "temperature": temperature, "algorithm": "exact", "ks": ks}
    assert (result["n_train"], result["n_test"], result["n_classes"]) == (800, 200, n_classes)


def test_blocks_and_memory_map(tmp_path, monkeypatch):
    from imgcls.neighbors import knn

    X_train, y_train, X_test, y_test = clustered(3, 12, 300, 90)
    whole = knn_evaluate(X_train, y_train, X_test, y_test, [5, 20], progress=False)
    np.save(tmp_path / "X.npy", X_test.astype(np.float16))
    X16 = np.load(tmp_path / "X.npy", mmap_mode="r")
    # three search calls of 40, 40 and 10 test rows
    monkeypatch.setattr(knn, "_MIN_SEARCH_ROWS", 40)
    monkeypatch.setattr(knn, "_BYTES_PER_NEIGHBOUR", 2**50)
    blocked = knn_evaluate(X_train, y_train, X_test, y_test, [5, 20], progress=False)
    assert blocked["rows"] == whole["rows"]
    half = knn_evaluate(X_train, y_train, X16, y_test, [5, 20], progress=False)
    for k in (5, 20):
        top1, top5 = dino_knn_classifier(X_train.astype(np.float64), y_train,
                                         np.asarray(X16, dtype=np.float64), y_test, k, 0.07, 12)
        row = next(r for r in half["rows"] if r["k"] == k)
        assert (round(row["top1"] * 90), round(row["top5"] * 90)) == (top1, top5)


def test_test_labels_missing_from_training_are_wrong():
    X_train, y_train, X_test, y_test = clustered(4, 5, 200, 50)
    y_test = y_test.copy()
    y_test[:10] = 99  # a class the training split lacks
    result = knn_evaluate(X_train, y_train, X_test, y_test, [1, 7], progress=False)
    ref = knn_evaluate(X_train, y_train, X_test[10:], y_test[10:], [1, 7], progress=False)
    for row, r in zip(result["rows"], ref["rows"]):
        assert row["top1"] * 50 == pytest.approx(r["top1"] * 40)


def test_approximate_search_reports_recall():
    pytest.importorskip("faiss")
    X_train, y_train, X_test, y_test = clustered(5, 8, 400, 60)
    exact = knn_evaluate(X_train, y_train, X_test, y_test, [5, 10], progress=False)
    # every inverted list probed: the exact answer, recall 1
    full = knn_evaluate(X_train, y_train, X_test, y_test, [5, 10], algorithm="ivf",
                        ann_params={"nlist": 8, "nprobe": 8}, progress=False)
    for row, ref in zip(full["rows"], exact["rows"]):
        assert row["recall"] == 1.0
        assert (row["top1"], row["top5"]) == (ref["top1"], ref["top5"])
    assert full["params"]["nlist"] == 8 and full["params"]["algorithm"] == "ivf"
    assert "exact_search" in full["timings"]
    part = knn_evaluate(X_train, y_train, X_test, y_test, [5, 10], algorithm="ivf",
                        ann_params={"nlist": 16, "nprobe": 1}, progress=False)
    assert all(0 < row["recall"] < 1 for row in part["rows"])


def test_bad_input():
    X_train, y_train, X_test, y_test = clustered(6, 3, 30, 10)
    with pytest.raises(ConfigError, match="ks is empty"):
        knn_evaluate(X_train, y_train, X_test, y_test, [])
    with pytest.raises(ConfigError, match="ks grid"):
        knn_evaluate(X_train, y_train, X_test, y_test, [0, 5])
    with pytest.raises(ValueError, match="k=31 is larger than the training set"):
        knn_evaluate(X_train, y_train, X_test, y_test, [31])
    with pytest.raises(ValueError, match="one label per row of X_test"):
        knn_evaluate(X_train, y_train, X_test, y_test[:9], [3])
    with pytest.raises(ValueError, match="temperature"):
        knn_evaluate(X_train, y_train, X_test, y_test, [3], temperature=0)
    with pytest.raises(ValueError, match="X_test must be an array"):
        knn_evaluate(X_train, y_train, [1, 2, 3], y_test, [3])
