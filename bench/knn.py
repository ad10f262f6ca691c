"""kNN section: imgcls against faiss, scikit-learn and the lecture's NumPy loop.

All 10,000 MNIST test images against all 60,000 training images, k = 10, in one
process so the ratios share the machine's load.  Each row's time covers what a
user of that tool must do: imgcls ``fit`` + ``kneighbors`` on the uint8 images;
faiss float32 conversion + ``IndexFlat.add`` + ``search``; scikit-learn ``fit``
+ ``kneighbors``; the lecture's loop over test images.  The slowest baselines
(faiss L1, scikit-learn p = 1, the NumPy loop) run on a subset of the queries
and their time is extrapolated linearly to all queries (column
``extrapolated_from``).  imgcls and faiss (L2) run twice, alternating, and
the best time counts, since the machine is shared.  ``ratio`` is the row's time over imgcls's time for the
same metric (> 1: imgcls is faster).  ``peak_extra_MiB`` is resident memory
above the level before the row (the inputs themselves excluded).  ``acc@10``:
10-NN majority vote (imgcls's tie rule) on the neighbours the tool returned,
on the queries it searched.  Then the exact accuracies on the full test set.

Then three groups of rows about repeated searches of one fitted model (the
preparation made at ``fit`` is reused by every call):

* single queries, k = 3, one MNIST test image at a time against the 60,000
  training images, for L1, L2 and cosine (the metrics interleaved, so they
  share the machine's load): ``p50_ms`` and ``min_ms`` of ``kneighbors``;
* the per-call overhead: the same calls against a 16-row training set, where
  the scan costs nothing;
* cosine on embeddings: 200,000 x 768 float32 training rows (Gaussian; exact
  search does not care about their structure), 5,000 queries, k = 20:
  imgcls ``kneighbors`` on a fitted model against faiss ``IndexFlatIP.search``
  on an index already built (both searches alone, alternating, best of two;
  ``ratio`` = faiss time / imgcls time as above), plus what each pays once
  (imgcls ``fit``; faiss normalisation + ``add``).
"""

from __future__ import annotations

import time

import numpy as np

from .common import measure

K = 10


def _vote_acc(ind, y_train, y_test, k, n_classes=10):
    from imgcls.neighbors.vote import vote_rank, vote_scores

    neigh_y = y_train[ind[:, :k]]
    ranked = vote_rank(vote_scores(neigh_y, np.zeros(neigh_y.shape), n_classes), neigh_y)
    return float(np.mean(ranked[:, 0] == y_test[: len(ind)]))


def _row(tool, metric, m, n_done, n_all, base, acc):
    t = m.seconds * n_all / n_done
    return {"section": "knn", "tool": tool, "metric": metric, "time_s": t,
            "extrapolated_from": (f"{n_done} queries" if n_done < n_all else ""),
            "ratio": None if base is None else t / base,
            "peak_extra_MiB": m.peak_extra_mib, "acc@10": acc}


def run(data, quick):
    import faiss
    from sklearn.neighbors import KNeighborsClassifier

    from imgcls.neighbors import KNearestNeighbor

    Xtr, ytr = data.X_train, np.asarray(data.y_train)
    Xte, yte = data.X_test, np.asarray(data.y_test)
    if quick:
        Xtr, ytr, Xte, yte = Xtr[:3000], ytr[:3000], Xte[:300], yte[:300]
    Xtr2 = Xtr.reshape(len(Xtr), -1)
    Xte2 = Xte.reshape(len(Xte), -1)
    nq = len(Xte2)
    sub = {"faiss_l1": 400, "sk_l1": 200, "loop": 50}
    if quick:
        sub = {key: min(v, 60) for key, v in sub.items()}
    rows = []
    full_ind = {}

    # warm-up: numba compile / cache load, faiss and BLAS thread pools
    KNearestNeighbor(k=K, metric="l1").fit(Xtr2[:100], ytr[:100]).kneighbors(Xte2[:8])
    KNearestNeighbor(k=K, metric="l2").fit(Xtr2[:100], ytr[:100]).kneighbors(Xte2[:8])

    def imgcls_run(metric):
        est = KNearestNeighbor(k=K, metric=metric).fit(Xtr, ytr)
        return est.kneighbors(Xte)[1]

    def faiss_run(metric, n):
        index = (faiss.IndexFlatL2(Xtr2.shape[1]) if metric == "l2"
                 else faiss.IndexFlat(Xtr2.shape[1], faiss.METRIC_L1))
        index.add(Xtr2.astype(np.float32))
        return index.search(Xte2[:n].astype(np.float32), K)[1]

    for metric in ("l1", "l2"):
        # imgcls and the faiss L2 anchor alternate, best of `reps`: the machine is
        # shared, and the best time is the least disturbed one
        reps = 1 if quick else 2
        n_faiss = nq if metric == "l2" else sub["faiss_l1"]
        best = {}
        for _ in range(reps):
            for tool in ("imgcls", "faiss"):
                if tool == "faiss" and best.get("faiss") and metric == "l1":
                    continue  # the slow L1 baseline runs once
                with measure() as m:
                    ind = imgcls_run(metric) if tool == "imgcls" else faiss_run(metric, n_faiss)
                if tool not in best or m.seconds < best[tool][0].seconds:
                    best[tool] = (m, ind)
        m, ind = best["imgcls"]
        full_ind[metric] = ind
        base = m.seconds
        rows.append(_row("imgcls (uint8)", metric, m, nq, nq, base,
                         _vote_acc(ind, ytr, yte, K)))
        m, find = best["faiss"]
        rows.append(_row("faiss IndexFlatL2" if metric == "l2" else "faiss IndexFlat(METRIC_L1)",
                         metric, m, n_faiss, nq, base, _vote_acc(find, ytr, yte, K)))

        n = nq if metric == "l2" else sub["sk_l1"]
        with measure() as m:
            sk = KNeighborsClassifier(n_neighbors=K, algorithm="brute", p=2 if metric == "l2" else 1,
                                      n_jobs=-1).fit(Xtr2, ytr)
            sind = sk.kneighbors(Xte2[:n], return_distance=False)
        rows.append(_row(f"sklearn brute p={2 if metric == 'l2' else 1}", metric, m, n, nq, base,
                         _vote_acc(sind, ytr, yte, K)))

        if metric == "l1":
            n = sub["loop"]
            lind = np.empty((n, K), dtype=np.int64)
            with measure() as m:
                Xf = Xtr2.astype(np.float64)  # the lecture's loop would wrap around in uint8
                for i in range(n):
                    distances = np.sum(np.abs(Xf - Xte2[i]), axis=1)
                    part = np.argpartition(distances, K)[:K]
                    lind[i] = part[np.lexsort((part, distances[part]))]
                del Xf
            rows.append(_row("lecture NumPy loop", metric, m, n, nq, base,
                             _vote_acc(lind, ytr, yte, K)))

    for metric, k in (("l2", 1), ("l2", 3), ("l1", 1)):
        rows.append({"section": "knn", "tool": f"imgcls exact {k}-NN accuracy, {nq} test images",
                     "metric": metric, "accuracy": _vote_acc(full_ind[metric], ytr, yte, k)})
    rows += single_query_rows(Xtr, ytr, Xte, quick)
    rows += embedding_rows(quick)
    return rows


SINGLE_K = 3
# issue 9's targets for one MNIST query (p50, 2 cores)
SINGLE_TARGET_MS = {"l1": 5.0, "l2": 10.0, "cosine": None}
OVERHEAD_TARGET_MS = 1.0


def _single_times(models, queries, reps):
    """Per metric, the seconds of each one-query ``kneighbors`` call, metrics interleaved."""
    times = {m: [] for m in models}
    for i in range(reps):
        q = queries[i % len(queries)][None]
        for metric, est in models.items():
            t0 = time.perf_counter()
            est.kneighbors(q)
            times[metric].append(time.perf_counter() - t0)
    return times


def single_query_rows(Xtr, ytr, Xte, quick):
    """p50 of one-query searches (k = 3) on the whole training set, and the per-call overhead."""
    from imgcls.neighbors import KNearestNeighbor

    reps = 20 if quick else 200
    rows = []
    for label, X, y in (("single query", Xtr, ytr), ("per-call overhead (16 training rows)",
                                                     Xtr[:16], ytr[:16])):
        models = {m: KNearestNeighbor(k=SINGLE_K, metric=m).fit(X, y)
                  for m in ("l1", "l2", "cosine")}
        _single_times(models, Xte, 5)  # warm-up: kernels compiled or loaded
        times = _single_times(models, Xte, reps)
        for metric, ts in times.items():
            target = SINGLE_TARGET_MS[metric] if label == "single query" else OVERHEAD_TARGET_MS
            rows.append({"section": "knn", "tool": f"imgcls {label}, k={SINGLE_K}, uint8",
                         "metric": metric, "p50_ms": 1e3 * float(np.median(ts)),
                         "min_ms": 1e3 * float(np.min(ts)), "target_ms": target})
    return rows


def embedding_rows(quick, n_train=200_000, n_query=5_000, dim=768, k=20):
    """Cosine search on float32 embeddings: imgcls on a fitted model against faiss IndexFlatIP."""
    import faiss

    from imgcls.neighbors import KNearestNeighbor

    if quick:
        n_train, n_query = 20_000, 500
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_train, dim), dtype=np.float32)
    Q = rng.standard_normal((n_query, dim), dtype=np.float32)
    y = rng.integers(0, 1000, n_train)
    with measure() as fit_m:
        est = KNearestNeighbor(k=k, metric="cosine").fit(X, y)
    with measure() as add_m:
        Xn = X.copy()
        faiss.normalize_L2(Xn)
        index = faiss.IndexFlatIP(dim)
        index.add(Xn)
        del Xn

    def faiss_search():
        Qn = Q.copy()
        faiss.normalize_L2(Qn)
        return index.search(Qn, k)[1]

    best = {}
    for _ in range(1 if quick else 2):
        for tool, fn in (("imgcls", lambda: est.kneighbors(Q)[1]), ("faiss", faiss_search)):
            with measure() as m:
                ind = fn()
            if tool not in best or m.seconds < best[tool][0].seconds:
                best[tool] = (m, ind)
    base = best["imgcls"][0].seconds
    # faiss's float32 inner products may order near-ties differently: agreement, not equality
    agree = float(np.mean([len(np.intersect1d(a, b)) / k
                           for a, b in zip(best["imgcls"][1], best["faiss"][1])]))
    shape = f"{n_train}x{dim} f32, {n_query} queries, k={k}"
    return [
        {"section": "knn", "tool": f"imgcls cosine search, fitted ({shape})", "metric": "cosine",
         "time_s": base, "ratio": 1.0, "peak_extra_MiB": best["imgcls"][0].peak_extra_mib},
        {"section": "knn", "tool": f"faiss IndexFlatIP search ({shape})", "metric": "cosine",
         "time_s": best["faiss"][0].seconds, "ratio": best["faiss"][0].seconds / base,
         "peak_extra_MiB": best["faiss"][0].peak_extra_mib, "same_neighbours": agree},
        {"section": "knn", "tool": "imgcls fit (preparation, once)", "metric": "cosine",
         "time_s": fit_m.seconds, "peak_extra_MiB": fit_m.peak_extra_mib},
        {"section": "knn", "tool": "faiss normalise + add (once)", "metric": "cosine",
         "time_s": add_m.seconds, "peak_extra_MiB": add_m.peak_extra_mib},
    ]
