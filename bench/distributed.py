"""Distributed section: one process against a 2-worker Dask ``LocalCluster``.

    python -m bench --only distributed [--quick]

Rows, each the best of two runs, the two sides alternating (the machine is shared):

* MNIST, 10,000 test images against the 60,000 training images, k = 10, L2
  and L1: ``KNearestNeighbor(n_jobs=2)`` in this process (2 threads) against
  :class:`imgcls.distributed.ShardedKNearestNeighbor` on a ``LocalCluster`` of
  2 worker processes with 1 thread each (one shard each, scattered once);
* a 1,000,000 x 768 float16 synthetic embedding set (cosine, k = 20, 1,000
  queries), written once as two ``.npy`` shard files that the workers
  memory-map themselves, against the same model in this process on the
  concatenated memory-mapped rows.

``throughput_ratio`` = single-process time / cluster time (the target: >= 0.8).
``bytes_per_1000_queries`` comes from Dask's own counters: the scattered
query batch's ``nbytes`` (the scheduler's record of what the client sent), plus
every byte the workers sent (``transfer_outgoing_bytes_total``: the batch to
the other worker, which fetches it from the first, and each worker's result to
the client, since gathers are served by the workers); the bound of the issue
is ``2 x (query bytes + k x 16 bytes per query)``.  Searches are
identical (checked on every run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

#: Rows of the synthetic embedding set and its width (a ViT-B embedding).
EMBED_ROWS, EMBED_DIM = 1_000_000, 768


def _cache() -> Path:
    root = Path(os.environ.get("IMGCLS_BENCH_CACHE", Path.home() / ".cache" / "imgcls-bench"))
    return root / "distributed"


def _embedding_files(n_rows: int, seed: int = 0):
    """The set as one float16 ``.npy`` file and as two shard files, written once.

    Returns
    -------
    whole : str
        The single file (the single-process rows memory-map it).
    shards : list of str
        Its two halves (each worker memory-maps one).
    """
    folder = _cache() / f"embed-{n_rows}x{EMBED_DIM}-s{seed}"
    whole = folder / "X_train.npy"
    half = n_rows // 2
    shards = [folder / "X_train-00000.npy", folder / "X_train-00001.npy"]
    if not all(p.exists() for p in (whole, *shards)):
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        outs = [np.lib.format.open_memmap(p.with_suffix(".tmp"), mode="w+", dtype=np.float16,
                                          shape=shape)
                for p, shape in ((whole, (n_rows, EMBED_DIM)), (shards[0], (half, EMBED_DIM)),
                                 (shards[1], (n_rows - half, EMBED_DIM)))]
        for s in range(0, n_rows, 65536):
            e = min(n_rows, s + 65536)
            block = rng.standard_normal((e - s, EMBED_DIM), dtype=np.float32)
            outs[0][s:e] = block
            for out, lo in ((outs[1], 0), (outs[2], half)):
                a, b = max(s, lo), min(e, lo + out.shape[0])
                if a < b:
                    out[a - lo:b - lo] = block[a - s:b - s]
        for out, p in zip(outs, (whole, *shards)):
            out.flush()
            del out
            os.replace(p.with_suffix(".tmp"), p)
        outs.clear()
    return str(whole), [str(p) for p in shards]


def _transfers(client) -> int:
    return int(sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total
                              ).values()))


def _alternate(fn_a, fn_b, repeats):
    """Best times of two callables run alternately (the machine's load hits both)."""
    best = [float("inf"), float("inf")]
    out = [None, None]
    for _ in range(repeats):
        for j, fn in enumerate((fn_a, fn_b)):
            t0 = time.perf_counter()
            out[j] = fn()
            best[j] = min(best[j], time.perf_counter() - t0)
    return best, out


def _traffic_per_batch(client, sharded, Q, k):
    """Run one batch by hand, reading Dask's counters around it."""
    from imgcls.distributed.shards import search_shards

    before = _transfers(client)
    groups = sharded._by_worker()
    q = client.scatter(Q, hash=False)
    tasks = [client.submit(search_shards, q, k, sharded.metric, sharded.working_memory,
                           int(sharded.shard_rows_.sum()), [int(sharded.shard_offsets_[i]) for i in idx],
                           *[sharded._shards[i] for i in idx], workers=[w],
                           allow_other_workers=True, pure=False)
             for w, idx in groups.items()]
    client.gather(tasks)
    # the scatter, then every byte a worker sent: the batch to the other
    # worker and each result to the client (gathers are served by the workers)
    moved = client.nbytes([q.key], summary=False)[q.key] + _transfers(client) - before
    bound = 2 * (Q.nbytes + k * 16 * Q.shape[0])
    return moved, bound


def run(data, quick: bool) -> list[dict]:
    import distributed

    from imgcls.datasets.features import map_npy
    from imgcls.distributed import ShardedKNearestNeighbor
    from imgcls.neighbors import KNearestNeighbor

    repeats = 1 if quick else 2
    n_q = 1000 if quick else 10000
    Xtr = data.X_train.reshape(len(data.X_train), -1)
    Xq = data.X_test[:n_q].reshape(n_q, -1)
    rows = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        for metric in ("l2", "l1"):
            local = KNearestNeighbor(k=10, metric=metric, n_jobs=2).fit(Xtr, data.y_train)
            sharded = ShardedKNearestNeighbor(client, k=10, metric=metric,
                                              batch_size=n_q).fit(Xtr, data.y_train)
            sharded.kneighbors(Xq[:50])  # compile the kernels in the workers
            (t_local, t_dask), ((d1, i1), (d2, i2)) = _alternate(
                lambda: local.kneighbors(Xq), lambda: sharded.kneighbors(Xq), repeats)
            moved, bound = _traffic_per_batch(client, sharded, Xq[:1000], 10)
            rows.append({"section": "distributed", "data": f"MNIST {n_q}x60000", "metric": metric,
                         "k": 10, "single_process_s": t_local, "cluster_2x1_s": t_dask,
                         "throughput_ratio": t_local / t_dask,
                         "identical": bool(np.array_equal(i1, i2) and np.array_equal(d1, d2)),
                         "bytes_per_1000_queries": moved, "bound_bytes": bound})
            print(rows[-1], flush=True)
        n_rows = 100_000 if quick else EMBED_ROWS
        whole, paths = _embedding_files(n_rows)
        rng = np.random.default_rng(1)
        y = rng.integers(0, 1000, n_rows)
        Q = rng.standard_normal((200 if quick else 1000, EMBED_DIM),
                                dtype=np.float32).astype(np.float16)
        sharded = ShardedKNearestNeighbor(client, k=20, metric="cosine",
                                          batch_size=len(Q)).fit(paths, y)
        sharded.kneighbors(Q[:10])
        local = KNearestNeighbor(k=20, metric="cosine", n_jobs=2).fit(map_npy(whole), y)
        (t_local, t_dask), ((d1, i1), (d2, i2)) = _alternate(
            lambda: local.kneighbors(Q), lambda: sharded.kneighbors(Q), repeats)
        moved, bound = _traffic_per_batch(client, sharded, Q, 20)
        rows.append({"section": "distributed", "data": f"embeddings {n_rows}x{EMBED_DIM} float16",
                     "metric": "cosine", "k": 20, "single_process_s": t_local,
                     "cluster_2x1_s": t_dask, "throughput_ratio": t_local / t_dask,
                     "identical": bool(np.array_equal(i1, i2) and np.array_equal(d1, d2)),
                     "bytes_per_1000_queries": moved * 1000 // len(Q),
                     "bound_bytes": bound * 1000 // len(Q)})
        print(rows[-1], flush=True)
    return rows
