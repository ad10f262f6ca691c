"""ShardedKNearestNeighbor equals KNearestNeighbor on the concatenated rows."""

import numpy as np
import pytest

from imgcls.errors import ConfigError, DatasetError
from imgcls.neighbors import KNearestNeighbor

from imgcls.distributed import ShardedKNearestNeighbor

DTYPES = [np.uint8, np.float16, np.float32]


def _data(dtype, n=240, d=12, n_query=37, seed=0):
    rng = np.random.default_rng(seed)
    # few distinct values: many exact distance ties, also across shard boundaries
    X = rng.integers(0, 5, (n, d)).astype(dtype)
    X[100:110] = X[0]  # duplicates of row 0 in another shard
    y = rng.integers(0, 4, n)
    Q = rng.integers(0, 5, (n_query, d)).astype(dtype)
    Q[:3] = X[0]
    return X, y, Q


def _assert_same(local, sharded, Q):
    d1, i1 = local.kneighbors(Q)
    d2, i2 = sharded.kneighbors(Q)
    np.testing.assert_array_equal(i2, i1)
    np.testing.assert_array_equal(d2, d1)  # bit for bit
    np.testing.assert_array_equal(sharded.predict(Q), local.predict(Q))
    np.testing.assert_array_equal(sharded.predict_topk(Q, 3), local.predict_topk(Q, 3))
    np.testing.assert_array_equal(sharded.predict_proba(Q), local.predict_proba(Q))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("weights", ["uniform", "distance", "softmax"])
def test_uneven_and_empty_shards_match_local(client, dtype, metric, weights):
    X, y, Q = _data(dtype)
    cuts = [0, 7, 7, 105, 190, 240]  # an empty shard, a 7-row one, ties straddling cuts
    parts = [X[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    local = KNearestNeighbor(k=9, metric=metric, weights=weights).fit(X, y)
    sharded = ShardedKNearestNeighbor(client, k=9, metric=metric, weights=weights,
                                      batch_size=10).fit(parts, y)
    assert len(sharded.shard_rows_) == 5  # more shards than workers
    _assert_same(local, sharded, Q)


def test_one_array_is_cut_into_one_shard_per_worker(client):
    X, y, Q = _data(np.uint8)
    sharded = ShardedKNearestNeighbor(client, k=5, metric="l2").fit(X, y)
    assert sharded.shard_rows_.tolist() == [120, 120]
    assert sorted(set(sharded.shard_workers_)) == sorted(client.nthreads())
    _assert_same(KNearestNeighbor(k=5, metric="l2").fit(X, y), sharded, Q)


def test_images_and_k_larger_than_a_shard(client):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (60, 4, 4, 1)).astype(np.uint8)
    y = rng.integers(0, 3, 60)
    parts = [X[:3], X[3:]]
    sharded = ShardedKNearestNeighbor(client, k=10).fit(parts, y)
    assert sharded.image_shape_ == (4, 4, 1)
    _assert_same(KNearestNeighbor(k=10).fit(X, y), sharded, X[:9])


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3"])
def test_bad_n_neighbors_as_the_local_estimator_says(client, n):
    X, y, _ = _data(np.float32)
    sharded = ShardedKNearestNeighbor(client, k=3).fit(X, y)
    local = KNearestNeighbor(k=3).fit(X, y)
    for est in (sharded, local):
        with pytest.raises(ValueError, match=r"n_neighbors must be an integer >= 1, got"):
            est.kneighbors(X[:2], n_neighbors=n)


def test_bad_input_leaves_the_estimator_unchanged(client):
    X, y, _ = _data(np.float32)
    est = ShardedKNearestNeighbor(client, k=3).fit(X, y)
    before = est.shard_rows_.copy()
    with pytest.raises(DatasetError, match="width"):
        est.fit([X[:10], X[10:, :5]], y)
    with pytest.raises(DatasetError, match="labels"):
        est.fit(X, y[:-1])
    with pytest.raises(DatasetError, match="k=3 is larger"):
        est.fit([X[:2]], y[:2])
    with pytest.raises(DatasetError, match="dtype"):
        est.fit([X[:10], X[10:].astype(np.float64)], y)
    bad = X.copy()
    bad[5, 1] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        est.fit(bad, y)
    np.testing.assert_array_equal(est.shard_rows_, before)
    with pytest.raises(ValueError, match="features"):
        est.kneighbors(X[:2, :5])


def test_without_a_client():
    with pytest.raises(ConfigError, match="Client"):
        ShardedKNearestNeighbor(k=1).fit(np.zeros((3, 2)), [0, 1, 0])


def test_workers_with_another_version_are_refused(client, monkeypatch):
    from imgcls import __version__
    from imgcls.distributed import cluster

    monkeypatch.setattr(cluster, "_worker_version", lambda: "0.0.0-other")
    with pytest.raises(ConfigError, match=f"0.0.0-other.*{__version__}"):
        ShardedKNearestNeighbor(client, k=1).fit(np.zeros((3, 2)), [0, 1, 0])


def test_unreachable_scheduler_fails_fast():
    import time

    from imgcls.distributed import connect

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        connect("tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 15
    with pytest.raises(ConfigError, match="local:N"):
        connect("local:zero")


def _write_shards(tmp_path, X, cuts):
    paths = []
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        p = tmp_path / f"X_train-{i:05d}.npy"
        np.save(p, X[a:b])
        paths.append(str(p))
    return paths


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_file_shards_are_opened_by_the_workers(client, tmp_path, metric):
    X, y, Q = _data(np.uint8)
    paths = _write_shards(tmp_path, X, [0, 50, 50, 170, 240])
    sharded = ShardedKNearestNeighbor(client, k=7, metric=metric).fit(paths, y)
    assert [f["path"] for f in sharded.shard_files_] == paths
    assert sharded.shard_rows_.tolist() == [50, 0, 120, 70]
    _assert_same(KNearestNeighbor(k=7, metric=metric).fit(X, y), sharded, Q)


def test_a_shard_changed_after_fit_is_refused(client, tmp_path):
    X, y, Q = _data(np.uint8)
    paths = _write_shards(tmp_path, X, [0, 120, 240])
    sharded = ShardedKNearestNeighbor(client, k=3).fit(paths, y)
    sharded.predict(Q)
    changed = X[120:].copy()
    changed[0, 0] += 1
    np.save(paths[1], changed)  # same size, other content
    with pytest.raises(DatasetError, match="changed after fit"):
        sharded.predict(Q)


def test_unreadable_or_mismatched_shard_files(client, tmp_path):
    X, y, _ = _data(np.uint8)
    paths = _write_shards(tmp_path, X, [0, 120, 240])
    est = ShardedKNearestNeighbor(client, k=3)
    with pytest.raises(DatasetError, match="missing.npy"):
        est.fit([paths[0], str(tmp_path / "missing.npy")], y)
    np.save(tmp_path / "narrow.npy", X[:5, :4])
    with pytest.raises(DatasetError, match="width"):
        est.fit([paths[0], str(tmp_path / "narrow.npy")], y[:125])
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(DatasetError, match="bad.npy"):
        est.fit([str(tmp_path / "bad.npy")], y[:1])
    assert not hasattr(est, "shard_rows_")


def test_cli_unreachable_scheduler_is_one_line(monkeypatch, capsys, tmp_path):
    from imgcls.cli import main
    from imgcls.distributed import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    assert main(["run", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imgcls: error: cannot reach the Dask scheduler")
    assert not (tmp_path / "r").exists()
    assert main(["run", "--scheduler", "nowhere"]) == 1


def test_a_features_dir_becomes_file_shards(client, tmp_path):
    import imgcls

    X, y, Q = _data(np.float16)
    for i, (a, b) in enumerate([(0, 90), (90, 240)]):
        np.save(tmp_path / f"X_train-{i:05d}.npy", X[a:b])
    np.save(tmp_path / "y_train.npy", y)
    np.save(tmp_path / "X_test.npy", Q)
    np.save(tmp_path / "y_test.npy", np.zeros(len(Q), dtype=np.int64))
    ds = imgcls.load_dataset(f"features:{tmp_path}")
    sharded = ShardedKNearestNeighbor(client, k=4, metric="cosine").fit(ds.X_train, ds.y_train)
    assert [f["path"] for f in sharded.shard_files_] == [
        str(tmp_path / f"X_train-{i:05d}.npy") for i in range(2)]
    _assert_same(KNearestNeighbor(k=4, metric="cosine").fit(X, y), sharded, Q)
