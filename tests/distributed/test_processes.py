"""Worker processes killed mid-search: Dask reruns, the answer does not change."""

import os
import signal

import numpy as np
import pytest

from imgcls.distributed import ShardedKNearestNeighbor
from imgcls.distributed import sharded as sharded_module
from imgcls.neighbors import KNearestNeighbor

pytestmark = pytest.mark.slow


def _kill_one_worker_after_batch(monkeypatch, client, batch):
    search = sharded_module.ShardedKNearestNeighbor._search_batch
    calls = []

    def search_then_kill(self, Xq, k, working_memory):
        calls.append(1)
        if len(calls) == batch:
            pids = client.run(os.getpid)
            os.kill(pids[sorted(pids)[0]], signal.SIGKILL)  # the nanny starts a new one
        return search(self, Xq, k, working_memory)

    monkeypatch.setattr(sharded_module.ShardedKNearestNeighbor, "_search_batch",
                        search_then_kill)
    return calls


@pytest.mark.parametrize("placement", ["scattered", "files"])
def test_killed_worker_gives_the_same_answer(process_client, tmp_path, monkeypatch, placement):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (6000, 32)).astype(np.uint8)
    y = rng.integers(0, 5, 6000)
    Q = rng.integers(0, 256, (300, 32)).astype(np.uint8)
    if placement == "files":
        train = []
        for i, (a, b) in enumerate([(0, 2500), (2500, 6000)]):
            np.save(tmp_path / f"s{i}.npy", X[a:b])
            train.append(str(tmp_path / f"s{i}.npy"))
    else:
        train = X
    sharded = ShardedKNearestNeighbor(process_client, k=5, metric="l2", batch_size=50)
    sharded.fit(train, y)
    expected = KNearestNeighbor(k=5, metric="l2").fit(X, y).kneighbors(Q)
    calls = _kill_one_worker_after_batch(monkeypatch, process_client, batch=2)
    dist, ind = sharded.kneighbors(Q)
    assert len(calls) == 6
    np.testing.assert_array_equal(ind, expected[1])
    np.testing.assert_array_equal(dist, expected[0])
    process_client.wait_for_workers(2, timeout=60)


def _without_times(value):
    """results.json minus what differs between any two runs: times and paths."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items()
                if not (k.endswith("time") or k in ("timings", "report", "model_file", "out"))}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_distributed_study_equals_the_local_one(process_client, tmp_path):
    import json

    from imgcls.cli import main
    from imgcls.pipeline import run_study

    run_study("digits", out=tmp_path / "local", progress=False)
    local = json.loads((tmp_path / "local" / "results.json").read_text())
    address = process_client.scheduler.address
    assert main(["run", "--scheduler", address, "--out", str(tmp_path / "dask"),
                 "--json"]) == 0
    remote = json.loads((tmp_path / "dask" / "results.json").read_text())
    assert _without_times(remote) == _without_times(local)
    for name in ("knn", "svm", "softmax"):
        assert remote["models"][name]["params"] == local["models"][name]["params"]
