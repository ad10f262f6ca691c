"""Scale section: kNN on ImageNet-size embeddings, exact and approximate (issue 9).

    python -m bench --only scale [--quick]      # through the harness
    python -m bench.scale [--quick] [--stages exact,ann,21k,mnist]

Data: ``bench.scale_data.ensure_scale_data(variant, quick)``, a ``features:DIR``
directory (``X_train.npy`` float16, ``y_train.npy``, ``X_test.npy``, ``y_test.npy``)
written once to a cache; variant ``"in1k"`` is 1,281,167 x 768 with 1,000 classes,
``"in21k"`` has 21,843 classes.  Until that generator is present, a small stand-in
of the same layout (``_stand_in``) is used and every row says so.

Stages and rows (cosine, k = 20, softmax votes with T = 0.07, DINO's kNN evaluation):

* ``exact``: imgcls ``KNearestNeighbor`` on the memory-mapped float16 file, and
  faiss ``IndexFlatIP`` on the float32 normalised rows in RAM (normalise + add
  timed apart from the search), alternating, in two environments (see
  ``environments``), because both wheels bundle an OpenBLAS whose CPU kernel
  depends on ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``.  The stage can be
  repeated for one environment (``--exact-envs given``); the targets use each
  row's best time;
* ``ann``: imgcls ``algorithm="ivf"`` (the smallest ``nprobe`` of a ladder
  reaching recall@20 >= 0.95 on the first queries) and ``"hnsw"`` (built with one
  thread, on the first ``HNSW_ROWS`` training rows, against the exact search on
  those rows), with recall@20, the speed ratio to the exact search and the top-1
  difference; ``hnsw-full``: HNSW on the whole training set, against the
  ``exact`` stage;
* ``21k``: predict + top-5 of 50,000 queries over 21,843 classes, k = 20, with
  ``cache_memory=0`` and with the default, memory counted from the process after
  ``fit``;
* ``mnist``: ``bench.knn`` (MNIST 10,000 x 60,000) in both environments;
* ``dino``: a plain NumPy version of DINO's chunked recipe (float32 normalised
  rows in RAM, a matmul per chunk of queries, argpartition, exp(sim / T) summed
  per class), and torch's when torch is importable.

Every row runs in its own subprocess, so its memory is its own.  Memory is
sampled from ``/proc/self/status`` every ``SAMPLE_S`` seconds: ``RssAnon`` is
the process's own memory, while ``RssFile`` counts pages of the memory-mapped
training file that the search touched (page cache, shared and evictable, the
file itself).  The "peak beyond the memory-mapped file" is the peak of RssAnon
(``anon_peak_MiB``), ``anon_start_MiB`` the interpreter and libraries before
the row's work.  Rows are stored as JSON under ``bench/results/scale/`` and
rendered to ``bench/results/scale.md`` after every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from .common import (REPO, RESULTS, blas_kernels, describe_blas,
                     environment_without_openblas_variables, markdown_table,
                     openblas_environment)

K = 20
TEMPERATURE = 0.07
N_QUERIES = {"in1k": 10_000, "in21k": 50_000}
TOP = 5
SAMPLE_S = 0.02
# queries per chunk of the NumPy DINO recipe: a (chunk x n_train) float32
# similarity block, 512 MB at 1.28 M rows (DINO: 10,000 / 100 chunks)
DINO_CHUNK = 100
# the IVF settings: faiss's guideline of about sqrt(n) lists, and the nprobe ladder
IVF_NLIST = 1024
NPROBE_LADDER = (2, 4, 8, 16, 32, 64, 128)
RECALL_TARGET = 0.95
# queries on which the nprobe / ef_search ladder is tried
TUNE_QUERIES = 1000
# training rows of the HNSW row: faiss's HNSW build (M = 16, efConstruction =
# 40, 768-d) ran at about 600 rows a second on one core of this shared machine,
# and imgcls builds with one thread for a deterministic graph: 1.28 M rows would
# take over half an hour
HNSW_ROWS = 50_000
EF_LADDER = (32, 64, 128, 256, 512)
# in the order they run: the timed comparison first, the plain NumPy recipe last
STAGES = ("exact", "ann", "21k", "mnist", "dino", "hnsw-full")
ROW_TIMEOUT_S = 3 * 3600
STORE = RESULTS / "scale"


# ------------------------------------------------------------------ data ---
def _stand_in(variant, quick):
    """A small features:DIR of the generator's layout, for when bench.scale_data is absent."""
    n_classes = {"in1k": 1000, "in21k": 21_843}[variant]
    n_train, n_test, d, sub = (20_000, 1000, 768, 64) if quick else (200_000, 10_000, 768, 64)
    if variant == "in21k":
        n_classes = 2000 if quick else n_classes
        n_test = 2000 if quick else 50_000
    root = Path(os.environ.get("IMGCLS_BENCH_CACHE", Path.home() / ".cache" / "imgcls-bench"))
    out = root / f"ann-stand-in-{variant}-{'quick' if quick else 'full'}"
    if (out / "y_test.npy").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(sub, d)) / np.sqrt(sub)
    centres = rng.normal(size=(n_classes, sub))
    for split, n in (("train", n_train), ("test", n_test)):
        X = np.lib.format.open_memmap(out / f"X_{split}.npy.part", "w+", np.float16, (n, d))
        y = rng.integers(0, n_classes, n)
        for s in range(0, n, 50_000):
            e = min(n, s + 50_000)
            z = centres[y[s:e]] + 0.9 * rng.normal(size=(e - s, sub))
            X[s:e] = (z @ basis + 0.05 * rng.normal(size=(e - s, d))).astype(np.float16)
        X.flush()
        del X
        os.replace(out / f"X_{split}.npy.part", out / f"X_{split}.npy")
        np.save(out / f"y_{split}.npy", y.astype(np.int64))
    return out


def data_dir(variant, quick):
    """(directory, source) of the variant's features."""
    try:
        from .scale_data import ensure_scale_data
    except ImportError:
        return _stand_in(variant, quick), "stand-in (bench.scale_data absent)"
    return Path(ensure_scale_data(variant, quick)), "bench.scale_data"


def _load(path):
    X = np.load(path / "X_train.npy", mmap_mode="r")
    y = np.load(path / "y_train.npy")
    Xq = np.load(path / "X_test.npy", mmap_mode="r")
    yq = np.load(path / "y_test.npy")
    return X, y, Xq, yq


# ------------------------------------------------------- memory sampling ---
def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(val.split()[0]) / 1024  # kB -> MiB
    return out


class Sampler:
    """Peak RssAnon / RssFile of this process, sampled by a thread."""

    def __init__(self):
        self.start = _status()
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self._take()
            self._stop.wait(SAMPLE_S)

    def _take(self):
        for k, v in _status().items():
            self.peak[k] = max(self.peak.get(k, 0.0), v)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._take()
        return {"anon_start_MiB": self.start["RssAnon"], "anon_peak_MiB": self.peak["RssAnon"],
                "file_peak_MiB": self.peak["RssFile"]}


# ------------------------------------------------------------------ votes ---
def _ranked(ind, sim, y_train, n_classes):
    """Top-5 class indices of softmax votes exp(sim / T), imgcls's tie rule."""
    from imgcls.neighbors import vote

    neigh_y = y_train[ind]
    dist = 1.0 - sim
    out = []
    for s in range(0, len(ind), 2000):  # dense votes of 2,000 queries: bounded
        sc = vote.vote_scores(neigh_y[s:s + 2000], dist[s:s + 2000], n_classes, "softmax",
                              TEMPERATURE, "cosine")
        out.append(vote.vote_rank(sc, neigh_y[s:s + 2000])[:, :TOP])
    return np.concatenate(out)


def _accuracy(ranked, yq):
    return {"top1": float(np.mean(ranked[:, 0] == yq)),
            "top5": float(np.mean((ranked == yq[:, None]).any(axis=1)))}


def _normalised_f32(X, rows=65_536):
    out = np.empty(X.shape, dtype=np.float32)
    for s in range(0, X.shape[0], rows):
        b = np.asarray(X[s:s + rows], dtype=np.float32)
        n = np.linalg.norm(b, axis=1, keepdims=True)
        out[s:s + rows] = b / np.where(n > 0, n, 1)
    return out


# ------------------------------------------------------------- row bodies ---
def row_imgcls_exact(args, X, y, Xq, yq, n_classes):
    from imgcls.neighbors import KNearestNeighbor

    t = time.perf_counter()
    est = KNearestNeighbor(k=K, metric="cosine", weights="softmax", temperature=TEMPERATURE)
    est.fit(X, y)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    dist, ind = est.kneighbors(Xq)
    search_s = time.perf_counter() - t
    np.save(args.ind_out, ind)
    kept = isinstance(est.X_fit_, np.memmap) or isinstance(getattr(est.X_fit_, "base", None),
                                                           np.memmap)
    return {"time_s": search_s, "prepare_s": fit_s, "X_fit_ is the memmap": kept,
            **_accuracy(_ranked(ind, 1.0 - dist, y, n_classes), yq)}


def row_faiss_flat(args, X, y, Xq, yq, n_classes):
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    Xn = _normalised_f32(X)
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(Xn)
    del Xn
    prep = time.perf_counter() - t
    q = _normalised_f32(Xq)
    t = time.perf_counter()
    sim, ind = index.search(q, K)
    search_s = time.perf_counter() - t
    np.save(args.ind_out, ind)
    return {"time_s": search_s, "prepare_s": prep,
            **_accuracy(_ranked(ind, sim.astype(np.float64), y, n_classes), yq)}


def row_numpy_dino(args, X, y, Xq, yq, n_classes):
    """DINO's eval_knn.knn_classifier, in NumPy: chunks of queries against all rows."""
    t = time.perf_counter()
    train = _normalised_f32(X)
    prep = time.perf_counter() - t
    q = _normalised_f32(Xq)
    t = time.perf_counter()
    top = np.empty((len(q), TOP), dtype=np.int64)
    ind_all = np.empty((len(q), K), dtype=np.int64)
    for s in range(0, len(q), DINO_CHUNK):
        sim = q[s:s + DINO_CHUNK] @ train.T
        part = np.argpartition(-sim, K - 1, axis=1)[:, :K]
        psim = np.take_along_axis(sim, part, axis=1)
        order = np.argsort(-psim, axis=1, kind="stable")
        ind = np.take_along_axis(part, order, axis=1)
        psim = np.take_along_axis(psim, order, axis=1)
        w = np.exp(psim / TEMPERATURE)
        votes = np.zeros((len(ind), n_classes), dtype=np.float32)
        np.add.at(votes, (np.arange(len(ind))[:, None], y[ind]), w)
        top[s:s + len(ind)] = np.argsort(-votes, axis=1, kind="stable")[:, :TOP]
        ind_all[s:s + len(ind)] = ind
    search_s = time.perf_counter() - t
    np.save(args.ind_out, ind_all)
    return {"time_s": search_s, "prepare_s": prep, **_accuracy(top, yq)}


def row_torch_dino(args, X, y, Xq, yq, n_classes):
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    t = time.perf_counter()
    train = torch.from_numpy(_normalised_f32(X))
    prep = time.perf_counter() - t
    q = torch.from_numpy(_normalised_f32(Xq))
    labels = torch.from_numpy(y)
    t = time.perf_counter()
    top = []
    for s in range(0, len(q), DINO_CHUNK):
        sim = q[s:s + DINO_CHUNK] @ train.T
        dist, idx = sim.topk(K, largest=True, sorted=True)
        w = (dist / TEMPERATURE).exp()
        onehot = torch.zeros(len(idx) * K, n_classes)
        onehot.scatter_(1, labels[idx].view(-1, 1), 1)
        probs = (onehot.view(len(idx), -1, n_classes) * w.view(len(idx), -1, 1)).sum(1)
        top.append(probs.topk(TOP, dim=1).indices.numpy())
    search_s = time.perf_counter() - t
    return {"time_s": search_s, "prepare_s": prep, **_accuracy(np.concatenate(top), yq)}


def _ann_row(args, X, y, Xq, yq, n_classes, algorithm):
    from imgcls.metrics import recall_at_k
    from imgcls.neighbors import KNearestNeighbor
    from imgcls.neighbors.ann import default_nlist

    exact = np.load(args.exact_ind)
    if algorithm == "hnsw":
        X, y = X[:args.train_rows], y[:args.train_rows]
        est = KNearestNeighbor(k=K, metric="cosine", weights="softmax",
                               temperature=TEMPERATURE, algorithm="hnsw", hnsw_m=16,
                               ef_construction=40)
        name, ladder = "ef_search", EF_LADDER
    else:
        est = KNearestNeighbor(k=K, metric="cosine", weights="softmax",
                               temperature=TEMPERATURE, algorithm="ivf",
                               nlist=min(IVF_NLIST, default_nlist(len(X))), random_state=0)
        name, ladder = "nprobe", NPROBE_LADDER
    est.fit(X, y)
    nt = min(TUNE_QUERIES, len(Xq))
    t = time.perf_counter()
    est.set_params(**{name: ladder[0]}).kneighbors(Xq[:1])  # builds the index
    build_s = time.perf_counter() - t
    tried = []
    for value in ladder:
        ind = est.set_params(**{name: value}).kneighbors(Xq[:nt], return_distance=False)
        r = recall_at_k(ind, exact[:nt])
        tried.append(f"{value}: {r:.3f}")
        if r >= RECALL_TARGET:
            break
    t = time.perf_counter()
    dist, ind = est.kneighbors(Xq)
    search_s = time.perf_counter() - t
    return {"time_s": search_s, "prepare_s": build_s, "setting": f"{name}={value}",
            "ladder (recall@20 on first queries)": ", ".join(tried),
            "recall@20": recall_at_k(ind, exact),
            **_accuracy(_ranked(ind, 1.0 - dist, y, n_classes), yq)}


def row_ivf(args, *a):
    return _ann_row(args, *a, algorithm="ivf")


def row_hnsw(args, *a):
    return _ann_row(args, *a, algorithm="hnsw")


def row_exact_subset(args, X, y, Xq, yq, n_classes):
    """imgcls exact on the first ``train_rows`` rows: the HNSW row's baseline."""
    return row_imgcls_exact(args, X[:args.train_rows], y[:args.train_rows], Xq, yq, n_classes)


# bytes held per (query, neighbour) by the blocked votes: distance and index
# (float64, int64), the neighbour's label and its weight (8 B each)
BYTES_PER_NEIGHBOUR = 32


def _predict_topk(args, X, y, Xq, yq, n_classes, cache_memory):
    """21,843 classes: predict + top-5 through the estimator's public methods.

    Memory is measured from the process's RssAnon after ``fit`` (interpreter,
    numba's kernels, the labels and, with ``cache_memory`` > 0, the float32
    training copy that option allows), so ``anon_peak - anon_base`` is what
    ``predict`` and ``predict_topk`` themselves hold.
    """
    from imgcls.config import get_config
    from imgcls.neighbors import KNearestNeighbor

    kw = {} if cache_memory is None else {"cache_memory": cache_memory}
    est = KNearestNeighbor(k=K, metric="cosine", weights="softmax", temperature=TEMPERATURE,
                           **kw)
    t = time.perf_counter()
    est.fit(X, y)
    fit_s = time.perf_counter() - t
    sampler = Sampler()  # restarted: the baseline is the process after fit
    t = time.perf_counter()
    pred = est.predict(Xq)
    labels = est.predict_topk(Xq, TOP)
    search_s = time.perf_counter() - t
    mem = sampler.stop()
    wm = get_config()["working_memory"]
    per_query = len(Xq) * K * BYTES_PER_NEIGHBOUR / 2**20
    ranked = np.searchsorted(est.classes_, labels)
    return {"time_s": search_s, "prepare_s": fit_s,
            "cache_memory_MiB": est.cache_memory, "working_memory_MiB": wm,
            "n_query x k x 32 B (MiB)": per_query,
            "anon_base_MiB": mem["anon_start_MiB"],
            "predict_anon_peak_MiB": mem["anon_peak_MiB"],
            "peak - base (MiB)": mem["anon_peak_MiB"] - mem["anon_start_MiB"],
            "budget (MiB)": wm + per_query,
            "predict agrees with top-1": bool(np.array_equal(pred, labels[:, 0])),
            **_accuracy(ranked, yq)}


def row_predict_topk(args, *a):
    """``cache_memory=0``: no float32 training copy, the search converts blocks."""
    return _predict_topk(args, *a, cache_memory=0)


def row_predict_topk_cache(args, *a):
    """The default ``cache_memory``: the float32 copy is kept at fit (part of the base)."""
    return _predict_topk(args, *a, cache_memory=None)


ROWS = {"imgcls_exact": row_imgcls_exact, "faiss_flat": row_faiss_flat,
        "numpy_dino": row_numpy_dino, "torch_dino": row_torch_dino, "ivf": row_ivf,
        "hnsw": row_hnsw, "exact_subset": row_exact_subset, "predict_topk": row_predict_topk,
        "predict_topk_cache": row_predict_topk_cache}


def child(args):
    """Run one row in this process and print it as JSON on the last line."""
    path = Path(args.dir)
    X, y, Xq, yq = _load(path)
    Xq, yq = Xq[:args.queries], yq[:args.queries]
    n_classes = int(max(y.max(), yq.max())) + 1
    # libraries and kernels loaded before the sampler starts: their code is not the row's
    import imgcls.neighbors  # noqa: F401
    kernels = describe_blas(blas_kernels(with_faiss=args.row in ("faiss_flat", "ivf", "hnsw")))
    # compile / load numba's kernels on a few rows first, as a user's second call would
    from imgcls.neighbors import KNearestNeighbor
    KNearestNeighbor(k=2, metric="cosine").fit(np.asarray(X[:64]), y[:64]).kneighbors(
        np.asarray(Xq[:4]))
    sampler = Sampler()
    row = ROWS[args.row](args, X, y, Xq, yq, n_classes)
    row.update(sampler.stop())
    row.update({"blas": kernels, "n_train": int(X.shape[0] if args.row not in
                                                ("hnsw", "exact_subset") else
                                                min(X.shape[0], args.train_rows)),
                "n_query": int(len(Xq)), "n_classes": n_classes})
    print(json.dumps(row))


# ----------------------------------------------------------------- parent ---
def environments():
    """(label, env) pairs: the environment as given and one with the other OpenBLAS kernel.

    When the given environment sets ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``,
    the second one has both unset (what a user's machine usually has); when it
    sets neither, the second forces ``OPENBLAS_CORETYPE=Haswell`` (what this
    project's machines set, see issue 9).
    """
    given = openblas_environment()
    label = "as given (" + ", ".join(f"{k}={v}" for k, v in given.items() if v) + ")" \
        if any(given.values()) else "as given (both OPENBLAS_* unset)"
    if any(given.values()):
        return [(label, dict(os.environ)),
                ("both OPENBLAS_* unset", environment_without_openblas_variables())]
    return [(label, dict(os.environ)),
            ("OPENBLAS_CORETYPE=Haswell", {**os.environ, "OPENBLAS_CORETYPE": "Haswell"})]


def run_row(row, variant, quick, env_label, env, queries, tmp, *, exact_ind=None,
            train_rows=None, section=None):
    path, source = data_dir(variant, quick)
    ind_out = tmp / (f"{variant}-{'quick' if quick else 'full'}-{row}-{train_rows}-"
                     f"{zlib.crc32(env_label.encode()):08x}.npy")
    cmd = [sys.executable, "-m", "bench.scale", "--child", row, "--dir", str(path),
           "--queries", str(queries), "--ind-out", str(ind_out)]
    if exact_ind is not None:
        cmd += ["--exact-ind", str(exact_ind)]
    if train_rows is not None:
        cmd += ["--train-rows", str(train_rows)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=ROW_TIMEOUT_S)
    wall = time.perf_counter() - t
    base = {"section": section or f"scale/{variant}", "row": row, "environment": env_label,
            "data": source + (" --quick" if quick else ""), "wall_s": wall, "load1": os.getloadavg()[0]}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {**base, "error": f"exit {proc.returncode}: {tail[0][:300]}"}, None
    return {**base, **json.loads(proc.stdout.strip().splitlines()[-1])}, ind_out


# the 21k stage's rows: cache_memory=0 (the target's row) and the default cache
ROWS_21K = ["predict_topk", "predict_topk_cache"]

# queries per variant when --queries overrides N_QUERIES (a shared machine's run)
QUERY_OVERRIDE = {}


def _queries(variant, quick):
    if variant in QUERY_OVERRIDE:
        return QUERY_OVERRIDE[variant]
    return N_QUERIES[variant] if not quick else {"in1k": 1000, "in21k": 2000}[variant]


def _store(stage, rows):
    STORE.mkdir(parents=True, exist_ok=True)
    (STORE / f"{stage}.json").write_text(json.dumps(rows, indent=1))
    render()


# environments of the exact stage: "all", or "given" / "other" alone (a repetition)
EXACT_ENVS = ["all"]


def stage_exact(quick, tmp):
    """imgcls and faiss, alternating, in each environment.

    Rows stored before with the same queries and data are kept and these are
    numbered as a further repetition (``rep``): the targets use each row's best
    time, since the machine is shared.
    """
    n = _queries("in1k", quick)
    path = STORE / "exact.json"
    old = [r for r in json.loads(path.read_text())
           if r.get("n_query") == n and r.get("data", "").endswith("--quick") == quick] \
        if path.is_file() else []
    for o in old:
        o.setdefault("rep", 1)
    envs = environments()
    if EXACT_ENVS != ["all"]:
        envs = [envs[0]] if EXACT_ENVS == ["given"] else envs[1:]
    rows = []
    exact_ind = None
    for label, env in envs:
        for row in ("imgcls_exact", "faiss_flat"):
            r, ind = run_row(row, "in1k", quick, label, env, n, tmp)
            r["rep"] = 1 + sum(o["row"] == row and o["environment"] == label for o in old)
            rows.append(r)
            if row == "imgcls_exact" and exact_ind is None:
                exact_ind = ind
    rows = old + rows
    _ratios(rows)
    _store("exact", rows)
    return exact_ind


def _best(rows, row, env):
    """The row's repetition with the least time in one environment, or None."""
    done = [r for r in rows if r["row"] == row and r["environment"] == env and "time_s" in r]
    return min(done, key=lambda r: r["time_s"]) if done else None


def stage_dino(quick, tmp):
    """The plain NumPy (and torch) DINO recipe, against the stored exact rows."""
    label, env = environments()[0]
    n = _queries("in1k", quick)
    rows = [run_row(row, "in1k", quick, label, env, n, tmp)[0]
            for row in ("numpy_dino", "torch_dino")]
    exact = STORE / "exact.json"
    if exact.is_file():
        mine = [r for r in json.loads(exact.read_text()) if r["row"] == "imgcls_exact"
                and r.get("n_query") == n]
        for r in rows:
            base = next((m["time_s"] for m in mine if m["environment"] == r["environment"]
                         and "time_s" in m), None)
            if r.get("time_s") and base:
                r["time / imgcls exact"] = r["time_s"] / base
    _store("dino", rows)


def _ratios(rows):
    exact = {r["environment"]: _best(rows, "imgcls_exact", r["environment"])["time_s"]
             for r in rows if _best(rows, "imgcls_exact", r["environment"])}
    for r in rows:
        base = exact.get(r["environment"]) or next(iter(exact.values()), None)
        if r.get("time_s") and base:
            r["time / imgcls exact"] = r["time_s"] / base


def stage_ann(quick, tmp, exact_ind):
    label, env = environments()[0]
    n = _queries("in1k", quick)
    rows = []
    if exact_ind is None:
        exact_ind = tmp / (f"in1k-{'quick' if quick else 'full'}-imgcls_exact-None-"
                           f"{zlib.crc32(label.encode()):08x}.npy")
    if not Path(exact_ind).is_file():
        r, exact_ind = run_row("imgcls_exact", "in1k", quick, label, env, n, tmp)
        rows.append(r)
    exact_rows = json.loads((STORE / "exact.json").read_text()) if (STORE / "exact.json").is_file() else rows
    exact = next((r for r in exact_rows if r["row"] == "imgcls_exact" and "time_s" in r), None)
    r, _ = run_row("ivf", "in1k", quick, label, env, n, tmp, exact_ind=exact_ind)
    if exact and "time_s" in r:
        r["speed-up vs exact"] = exact["time_s"] / r["time_s"]
        r["top1 - exact top1 (points)"] = 100 * (r["top1"] - exact["top1"])
    rows.append(r)
    hn = min(HNSW_ROWS, 5000 if quick else HNSW_ROWS)
    sub, sub_ind = run_row("exact_subset", "in1k", quick, label, env, n, tmp, train_rows=hn)
    rows.append(sub)
    if sub_ind is not None:
        r, _ = run_row("hnsw", "in1k", quick, label, env, n, tmp, exact_ind=sub_ind, train_rows=hn)
        if "time_s" in r and "time_s" in sub:
            r["speed-up vs exact"] = sub["time_s"] / r["time_s"]
            r["top1 - exact top1 (points)"] = 100 * (r["top1"] - sub["top1"])
        rows.append(r)
    _store("ann", rows)


def stage_hnsw_full(quick, tmp):
    """HNSW on the whole training set, against the stored exact search (added to ``ann``).

    Separate from ``ann`` because the one-thread build is long; run it when there is time.
    """
    label, env = environments()[0]
    n = _queries("in1k", quick)
    exact_ind = tmp / (f"in1k-{'quick' if quick else 'full'}-imgcls_exact-None-"
                       f"{zlib.crc32(label.encode()):08x}.npy")
    if not exact_ind.is_file():
        raise SystemExit("hnsw-full: run the exact stage first (its neighbours are the reference)")
    n_train = len(np.load(data_dir("in1k", quick)[0] / "y_train.npy", mmap_mode="r"))
    r, _ = run_row("hnsw", "in1k", quick, label, env, n, tmp, exact_ind=exact_ind,
                   train_rows=n_train)
    path = STORE / "ann.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [o for o in rows if o.get("data", "").endswith("--quick") == quick
            and not (o["row"] == "hnsw" and o.get("n_train") == n_train)]
    _store("ann", rows + [r])


def stage_21k(quick, tmp):
    label, env = environments()[0]
    n = _queries("in21k", quick)
    rows = [run_row(row, "in21k", quick, label, env, n, tmp)[0] for row in ROWS_21K]
    # rows of other query counts stored before are kept (a run at 50,000 and one
    # at fewer queries side by side); those of this count are replaced
    path = STORE / "21k.json"
    kept = [r for r in json.loads(path.read_text()) if r.get("n_query") != n
            and r.get("data", "").endswith("--quick") == quick] if path.is_file() else []
    _store("21k", kept + rows)


def stage_mnist(quick, tmp):
    """bench.knn in each environment, each in its own subprocess."""
    rows = []
    code = ("import json, sys; from bench import knn, common; "
            "rows = knn.run(common.load_mnist(), %r); "
            "print(json.dumps({'rows': rows, 'blas': common.describe_blas(common.blas_kernels())}))"
            % quick)
    for label, env in environments():
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=ROW_TIMEOUT_S)
        if proc.returncode != 0:
            rows.append({"section": "mnist knn", "environment": label,
                         "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]})
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        for r in out["rows"]:
            rows.append({"section": "mnist knn" + (" --quick" if quick else ""),
                         "environment": label, **r, "blas": out["blas"]})
    _store("mnist", rows)


_COLUMNS = ["row", "environment", "rep", "time_s", "prepare_s", "time / imgcls exact",
            "speed-up vs exact", "recall@20", "top1", "top5", "top1 - exact top1 (points)",
            "setting", "anon_peak_MiB", "anon_start_MiB", "file_peak_MiB", "n_train",
            "n_query", "n_classes", "cache_memory_MiB", "working_memory_MiB",
            "n_query x k x 32 B (MiB)", "anon_base_MiB", "predict_anon_peak_MiB",
            "peak - base (MiB)", "budget (MiB)", "predict agrees with top-1",
            "X_fit_ is the memmap", "ladder (recall@20 on first queries)", "data", "load1",
            "skipped", "error"]


def _summary(stored):
    """Lines checking the issue's targets against the stored rows."""
    out = []
    exact = stored.get("exact", [])
    for env in dict.fromkeys(r["environment"] for r in exact):
        mine, faiss = _best(exact, "imgcls_exact", env), _best(exact, "faiss_flat", env)
        if mine and faiss:
            ratio = mine["time_s"] / faiss["time_s"]
            reps = sum(r["environment"] == env and r["row"] == "imgcls_exact" for r in exact)
            out.append(f"- exact, {env}: imgcls search {mine['time_s']:.1f} s = {ratio:.2f} x "
                       f"faiss IndexFlatIP search {faiss['time_s']:.1f} s (best of {reps}; "
                       f"target <= 1.0: "
                       f"{'met' if ratio <= 1.0 else 'NOT met'}); imgcls peak RssAnon "
                       f"{mine['anon_peak_MiB']:.0f} MiB (target <= 1536: "
                       f"{'met' if mine['anon_peak_MiB'] <= 1536 else 'NOT met'}), faiss "
                       f"{faiss['anon_peak_MiB']:.0f} MiB; {mine['n_query']} queries")
    for r in stored.get("ann", []):
        if r["row"] in ("ivf", "hnsw") and "speed-up vs exact" in r:
            ok = (r["recall@20"] >= RECALL_TARGET and r["speed-up vs exact"] >= 10
                  and abs(r["top1 - exact top1 (points)"]) <= 0.5)
            out.append(f"- {r['row']} ({r['setting']}, {r['n_train']} training rows): "
                       f"recall@20 {r['recall@20']:.3f}, {r['speed-up vs exact']:.1f} x faster "
                       f"than exact, top-1 {r['top1 - exact top1 (points)']:+.2f} points "
                       f"(target >= 0.95, >= 10 x, within 0.5: {'met' if ok else 'NOT met'})")
    for r in stored.get("21k", []):
        if "time_s" in r:
            extra, budget = r["peak - base (MiB)"], r["budget (MiB)"]
            out.append(f"- 21k ({r['row']}, cache_memory={r['cache_memory_MiB']}): predict + "
                       f"top-5 of {r['n_query']} queries, {r['n_classes']} classes, k={K}: "
                       f"peak RssAnon {r['predict_anon_peak_MiB']:.0f} MiB - base after fit "
                       f"{r['anon_base_MiB']:.0f} MiB = {extra:.0f} MiB against working_memory "
                       f"{r['working_memory_MiB']} MiB + n_query x k x {BYTES_PER_NEIGHBOUR} B "
                       f"= {budget:.0f} MiB ({'met' if extra <= budget else 'NOT met'})")
    out += _mnist_summary(stored.get("mnist", []))
    return ["## Targets (issue 9)", ""] + out + [""] if out else []


# issue 9's single-query targets (p50, ms) and per-call overhead bound
SINGLE_QUERY_TARGET_MS = {"l2": 10.0, "l1": 5.0}
OVERHEAD_TARGET_MS = 1.0


def _mnist_summary(rows):
    """MNIST L2 10,000 x 60,000 against faiss, single queries and per-call overhead."""
    out = []
    for env in dict.fromkeys(r["environment"] for r in rows):
        mine = [r for r in rows if r["environment"] == env]
        own = next((r for r in mine if r.get("tool") == "imgcls (uint8)"
                    and r.get("metric") == "l2" and r.get("time_s")), None)
        faiss = next((r for r in mine if r.get("tool") == "faiss IndexFlatL2"
                      and r.get("time_s")), None)
        if own and faiss:
            ratio = own["time_s"] / faiss["time_s"]
            out.append(f"- MNIST L2 10,000 x 60,000, k=10, {env}: imgcls {own['time_s']:.2f} s "
                       f"= {ratio:.2f} x faiss IndexFlatL2 {faiss['time_s']:.2f} s (target "
                       f"<= 1.0: {'met' if ratio <= 1.0 else 'NOT met'})")
        for metric, target in SINGLE_QUERY_TARGET_MS.items():
            r = next((r for r in mine if str(r.get("tool", "")).startswith(
                "imgcls single query") and r.get("metric") == metric), None)
            if r:
                out.append(f"- MNIST single query {metric.upper()}, k=3, {env}: p50 "
                           f"{r['p50_ms']:.2f} ms (target <= {target:g}: "
                           f"{'met' if r['p50_ms'] <= target else 'NOT met'})")
        over = [r["p50_ms"] for r in mine if str(r.get("tool", "")).startswith(
            "imgcls per-call overhead")]
        if over:
            out.append(f"- per-call overhead (16 training rows), {env}: p50 <= {max(over):.2f} "
                       f"ms over L1/L2/cosine (target <= {OVERHEAD_TARGET_MS:g}: "
                       f"{'met' if max(over) <= OVERHEAD_TARGET_MS else 'NOT met'})")
    return out


def _ivf_against_best_exact(stored):
    """Approximate rows' speed-up and top-1 difference against the best exact repetition.

    The exact stage may be repeated after the ann stage ran, so this is worked
    out from the stored rows each time the results are rendered.
    """
    for r in stored.get("ann", []):
        if r["row"] not in ("ivf", "hnsw") or "time_s" not in r:
            continue
        best = _best([e for e in stored.get("exact", []) if e.get("n_query") == r["n_query"]
                      and e.get("n_train") == r.get("n_train")],
                     "imgcls_exact", r["environment"])
        if best:
            r["speed-up vs exact"] = best["time_s"] / r["time_s"]
            r["top1 - exact top1 (points)"] = 100 * (r["top1"] - best["top1"])


def render():
    """bench/results/scale.md from every stage stored so far."""
    lines = ["# Benchmark section `scale` (issue 9)", "",
             f"Rendered {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
             f"{os.cpu_count()} cores.  The machine was shared with other work while "
             "these ran (`load1`: the 1-minute load average when a row ended); times are "
             "inflated by it, ratios within a stage less so.  Each row ran in its own "
             "subprocess; memory columns are that process's RssAnon (its own memory, "
             "the peak is the memory beyond the memory-mapped file) and RssFile (pages "
             "of the mapped file it touched), see `bench/scale.py`.", ""]
    notes = RESULTS / "scale-notes.md"  # what a run left out or found, written by hand
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    stored = {st: json.loads((STORE / f"{st}.json").read_text()) for st in STAGES
              if (STORE / f"{st}.json").is_file()}
    _ivf_against_best_exact(stored)
    lines += _summary(stored)
    for stage, rows in stored.items():
        lines += [f"## {stage}", ""]
        if stage == "mnist":
            keys = dict.fromkeys(k for r in rows for k in r if k != "blas")
            lines.append(markdown_table(rows, list(keys)))
        else:
            present = [c for c in _COLUMNS if any(c in r for r in rows)]
            lines.append(markdown_table(rows, present))
        blas = sorted({(r.get("environment"), r.get("blas")) for r in rows if r.get("blas")})
        if blas:
            lines += ["", "BLAS kernels (threadpoolctl):", ""]
            lines += [f"- {env} / {b}" for env, b in blas]
        lines.append("")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.md").write_text("\n".join(lines))


def run_stages(stages, quick):
    # neighbour indices of each row, kept so that a later `--stages ann` finds
    # the exact search's answers (the recall reference)
    tmp = STORE / "indices"
    tmp.mkdir(parents=True, exist_ok=True)
    exact_ind = None
    if "exact" in stages:
        exact_ind = stage_exact(quick, tmp)
    if "ann" in stages:
        stage_ann(quick, tmp, exact_ind)
    if "21k" in stages:
        stage_21k(quick, tmp)
    if "mnist" in stages:
        stage_mnist(quick, tmp)
    if "dino" in stages:
        stage_dino(quick, tmp)
    if "hnsw-full" in stages:
        stage_hnsw_full(quick, tmp)
    rows = []
    for stage in stages:
        p = STORE / f"{stage}.json"
        if p.is_file():
            rows += json.loads(p.read_text())
    return rows


def run(data, quick):
    """The harness's entry point (``python -m bench --only scale``); ``data`` unused."""
    rows = run_stages(STAGES, quick)
    return [{k: r.get(k) for k in ("section", "row", "tool", "metric", "environment", "time_s",
                                   "recall@20", "top1", "top5", "anon_peak_MiB", "error")
             if r.get(k) is not None} for r in rows]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--queries-1k", type=int, metavar="N",
                   help=f"queries of the in1k rows (default {N_QUERIES['in1k']})")
    p.add_argument("--queries-21k", type=int, metavar="N",
                   help=f"queries of the in21k row (default {N_QUERIES['in21k']})")
    p.add_argument("--exact-envs", choices=("all", "given", "other"), default="all",
                   help="environments of the exact stage (given/other alone: a repetition)")
    p.add_argument("--rows-21k", metavar="ROWS",
                   help=f"rows of the 21k stage (default {','.join(ROWS_21K)})")
    p.add_argument("--child", dest="row", choices=sorted(ROWS), help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--queries", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ind-out", help=argparse.SUPPRESS)
    p.add_argument("--exact-ind", help=argparse.SUPPRESS)
    p.add_argument("--train-rows", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.row:
        child(args)
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.queries_1k:
        QUERY_OVERRIDE["in1k"] = args.queries_1k
    if args.queries_21k:
        QUERY_OVERRIDE["in21k"] = args.queries_21k
    EXACT_ENVS[:] = [args.exact_envs]
    if args.rows_21k:
        ROWS_21K[:] = [r.strip() for r in args.rows_21k.split(",") if r.strip()]
        if not set(ROWS_21K) <= {"predict_topk", "predict_topk_cache"}:
            p.error("--rows-21k: choose from predict_topk, predict_topk_cache")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        p.error(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    run_stages(stages, args.quick)
    print((RESULTS / "scale.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
