"""The synthetic ImageNet-like generator of the ``scale`` benchmark: deterministic, cached,
a valid features:DIR, and its accuracy check equal to a brute-force reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: bench/

from bench import scale_data as sd  # noqa: E402
from imgcls.datasets import load_dataset  # noqa: E402

TINY = {**sd._COMMON, "dim": 32, "subspace": 8, "local_rank": 2, "chunk_rows": 64,
        "n_train": 300, "n_test": 40, "n_classes": 6, "n_super": 2, "sibling": 0.15,
        "seed": 7}


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(sd.VARIANTS, "tiny", (TINY, {**TINY, "n_train": 100}))
    return "tiny"


def test_generation_is_deterministic_and_a_features_dir(tmp_path, tiny):
    a = sd.ensure_scale_data(tiny, False, root=tmp_path / "a")
    b = sd.generate(tmp_path / "b", dict(TINY))
    for name in ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ds = load_dataset(f"features:{a}")
    assert ds.X_train.shape == (300, 32) and ds.X_train.dtype == np.float16
    assert isinstance(ds.X_train, np.memmap)
    assert np.bincount(ds.y_train).tolist() == [50] * 6  # balanced
    # the vectors lie near an 8-d subspace: from the 9th on, singular values are
    # the noise's, below its Marchenko-Pastur edge noise * (sqrt(n) + sqrt(dim))
    s = np.linalg.svd(np.asarray(ds.X_train, np.float64), compute_uv=False)
    edge = TINY["noise"] * (np.sqrt(300) + np.sqrt(32))
    assert s[8] < 1.1 * edge < s[7]
    assert not list(tmp_path.glob("*/.*tmp*"))


def test_the_cache_is_reused_and_refreshed(tmp_path, tiny):
    folder = sd.ensure_scale_data(tiny, True, root=tmp_path)
    stamp = (folder / "X_train.npy").stat().st_mtime_ns
    assert sd.ensure_scale_data(tiny, True, root=tmp_path, verify=True) == folder
    assert (folder / "X_train.npy").stat().st_mtime_ns == stamp
    with open(folder / "X_train.npy", "r+b") as f:  # damage without changing the size
        f.seek(-1, 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    assert sd.ensure_scale_data(tiny, True, root=tmp_path) == folder  # sizes match: kept
    sd.ensure_scale_data(tiny, True, root=tmp_path, verify=True)  # hash differs: rebuilt
    assert sd._matches(folder, sd.variant_params(tiny, True), verify=True)
    with pytest.raises(ValueError, match="unknown"):
        sd.ensure_scale_data("nope", True, root=tmp_path)


def _unit_rows(folder):
    """Training and test rows of a generated folder, L2-normalised in float64, with labels."""
    X = np.load(folder / "X_train.npy").astype(np.float64)
    Q = np.load(folder / "X_test.npy").astype(np.float64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return X, np.load(folder / "y_train.npy"), Q, np.load(folder / "y_test.npy")


def test_dino_accuracy_equals_brute_force(tmp_path, tiny):
    folder = sd.ensure_scale_data(tiny, False, root=tmp_path)
    top1, top5 = sd.dino_knn_accuracy(folder, n_queries=40, k=7, block_rows=50)
    X, y, Q, yq = _unit_rows(folder)
    sim = Q @ X.T
    hits1 = hits5 = 0
    for i in range(len(Q)):
        nn = np.argsort(-sim[i], kind="stable")[:7]
        scores = np.zeros(6)
        for j in nn:
            scores[y[j]] += np.exp(sim[i, j] / 0.07)
        ranked = np.argsort(-scores, kind="stable")
        hits1 += ranked[0] == yq[i]
        hits5 += yq[i] in ranked[:5]
    assert top1 == pytest.approx(hits1 / len(Q)) and top5 == pytest.approx(hits5 / len(Q))
    assert 0.2 < top1 < 1.0


def test_neighbours_stay_in_the_supercluster_and_siblings_are_confused(tmp_path, tiny):
    """The two scales the construction promises: superclusters apart, siblings overlapping."""
    folder = sd.ensure_scale_data(tiny, False, root=tmp_path)
    X, y, Q, yq = _unit_rows(folder)
    nn = np.argsort(-(Q @ X.T), axis=1, kind="stable")[:, :20]
    group = lambda labels: labels * TINY["n_super"] // TINY["n_classes"]  # noqa: E731
    assert np.all(group(y[nn]) == group(yq)[:, None])  # every neighbour: own supercluster
    assert 0.1 < np.mean(y[nn] != yq[:, None]) < 0.9  # ... but many from sibling classes


def test_the_variants_keep_the_density_of_their_full_sets():
    for variant, (full, quick) in sd.VARIANTS.items():
        for p in (full, quick):
            assert p["n_classes"] % p["n_super"] in (0, p["n_classes"] % p["n_super"])
            assert p["version"] == sd.GENERATOR_VERSION >= 2
        per_class = [round(p["n_train"] / p["n_classes"]) for p in (full, quick)]
        per_super = [round(p["n_classes"] / p["n_super"]) for p in (full, quick)]
        assert per_class[0] == per_class[1] and per_super[0] == per_super[1], variant
