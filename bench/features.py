"""Features section: HOG, colour histogram and k-means features on CIFAR-10 (JPEG copies).

Data: the 50,000 CIFAR-10 training images, ``../shared/data/cifar10-train/
cifar10-train-jpg.tar.gz`` (extracted once to ``$IMGCLS_BENCH_CIFAR`` or
``/tmp/cifar``), read with ``load_dataset("folder:...")``; a seeded stratified
45,000 / 5,000 split (``SEED``) is the train / validation split.  Every
transformer and every standardisation is fitted on the 45,000 only.

Rows:

* ``speed``: HOG + colour histogram of 60,000 images (the 50,000, then the
  first 10,000 again) against a loop of ``skimage.feature.hog`` plus the
  course's ``color_histogram_hsv`` on a subset, interleaved, best of
  ``REPEATS``; the loop's time is scaled to 60,000 images.
* ``speed``: ``KMeansFeatures(n_centroids=1600)`` transform, timed on the
  images the accuracy row extracts (50,000) and scaled to 60,000, and the
  paper's per-image NumPy im2col + matmul recipe (``_numpy_prototype``) on a
  subset, scaled the same way, and the floor of any exact transform
  (``floor_s``, as the ``floor`` row measures it).
* ``floor`` (``--stage floor``, alone: no data): ``transform_floors``, the
  steps every exact float32 transform must do, timed alone on the same shapes.
* ``accuracy``: imgcls's own linear classifiers (full-batch L-BFGS,
  ``standardize=True``: the paper's per-feature standardisation, fitted on the
  training rows) on the 45,000, one fit per ``reg`` of the grid, each scored on
  the 5,000 validation images; the row reports the best (validation accuracy
  as in the course notebook: the grid is chosen on it).  HOG + colour: also
  scikit-learn's ``LinearSVC`` as a reference.  ``--flips``: the k-means
  classifier also trains on the horizontally mirrored 45,000 (the features of
  each mirrored image), and the row adds a second validation accuracy with
  mirrors at test time too: each validation image is classified by the mean
  of the classifier's class scores on it and on its mirror (``val_acc_mirrored``;
  no label is used, the chosen ``reg`` stays the one ``val_acc`` chose).

Each row carries the 1-minute load average when it ended: the machine is
shared, so wall times are inflated by other work (the ratios less so).

    python -m bench --only features            # all rows (tens of minutes)
    python -m bench.features --stage speed     # one part; --quick for a subset
    python -m bench.features --stage floor     # the exact transform's floor (no data)
"""

from __future__ import annotations

import argparse
import os
import tarfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, measure

SEED = 0
N_VAL = 5000
N_SPEED = 60_000
REPEATS = 3
CIFAR_TAR = REPO.parent / "shared" / "data" / "cifar10-train" / "cifar10-train-jpg.tar.gz"
C_GRID_HOG = (0.01, 0.1, 1.0)  # LinearSVC's C (the reference row)
#: ``reg`` of imgcls's classifiers (mean loss + reg * ||W||^2)
REG_GRID_HOG = (1e-4, 1e-3, 1e-2)
REG_GRID_KMEANS = (3e-4, 1e-3, 3e-3)
#: L-BFGS iterations (``epochs``): the validation accuracy of the k-means rows
#: moved by < 0.003 between 200 and 300 (2026-12-01)
LBFGS_ITERATIONS = 300


def cifar_root() -> Path:
    """Where the JPEG folders are (extracted from ``CIFAR_TAR`` on first use)."""
    root = Path(os.environ.get("IMGCLS_BENCH_CIFAR", "/tmp/cifar"))
    if not (root / "train").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(CIFAR_TAR) as tar:
            tar.extractall(root, filter="data")
    return root


def load_cifar():
    """All 50,000 training images and labels, and the seeded stratified split indices."""
    import imgcls
    from sklearn.model_selection import train_test_split

    ds = imgcls.load_dataset(f"folder:{cifar_root()}")
    X = np.concatenate([ds.X_train, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    tr, va = train_test_split(np.arange(len(y)), test_size=N_VAL, stratify=y, random_state=SEED)
    return X, y, np.sort(tr), np.sort(va)


def _load():
    return os.getloadavg()[0]


def _skimage_loop(X):
    import matplotlib.colors as mc
    from skimage.feature import hog

    from imgcls.features.hog import grey_float64

    out = []
    bins = np.linspace(0, 255, 11)
    for im in X:
        h = hog(grey_float64(im[None])[0], 9, (8, 8), (2, 2), block_norm="L2-Hys")
        hue = mc.rgb_to_hsv(im / 255) * 255
        c, e = np.histogram(hue[:, :, 0], bins=bins, density=True)
        out.append(np.concatenate([h, c * np.diff(e)]))
    return np.array(out, dtype=np.float32)


def _numpy_prototype(f, X):
    """The per-image NumPy recipe of the paper's ``extract_features.m`` (im2col + matmul)."""
    from numpy.lib.stride_tricks import sliding_window_view

    p, C, cc = f.patch_size, f.centroids_, (f.centroids_ ** 2).sum(1)
    out = []
    for im in X:
        w = sliding_window_view(im.astype(np.float32), (p, p), axis=(0, 1))
        ph, pw = w.shape[:2]
        x = w.transpose(0, 1, 3, 4, 2).reshape(ph * pw, -1)
        x = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, ddof=1, keepdims=True) + 10)
        x = (x - f.mean_) @ f.whitening_
        z = np.sqrt(np.maximum((x ** 2).sum(1)[:, None] + cc - 2 * x @ C.T, 0))
        a = np.maximum(z.mean(1, keepdims=True) - z, 0).reshape(ph, pw, -1)
        h, v = round(ph / 2 + 1e-9), round(pw / 2 + 1e-9)
        out.append(np.concatenate([a[:h, :v].sum((0, 1)), a[:h, v:].sum((0, 1)),
                                   a[h:, :v].sum((0, 1)), a[h:, v:].sum((0, 1))]))
    return np.array(out)


def speed_hog(X, quick):
    from imgcls.features import make_features

    n = 2000 if quick else N_SPEED
    Xs = np.concatenate([X, X[:max(0, n - len(X))]])[:n]
    sub = Xs[:200 if quick else 1000]
    u = make_features("hog+color").fit(Xs[:10])
    u.transform(Xs[:10])  # compile outside the timing
    ours, ref = np.inf, np.inf
    for _ in range(REPEATS):
        t = time.perf_counter()
        u.transform(Xs)
        ours = min(ours, time.perf_counter() - t)
        t = time.perf_counter()
        R = _skimage_loop(sub)
        ref = min(ref, (time.perf_counter() - t) * n / len(sub))
    same = float(np.abs(u.transform(sub) - R).max())
    return [{"section": "features", "row": "speed", "what": f"hog+color, {n} images",
             "imgcls_s": ours, "skimage_loop_s": ref, "speedup": ref / ours,
             "max_abs_diff": same, "load1": _load()}]


def _best_of(fn, repeats):
    best = np.inf
    for _ in range(repeats + 1):  # the first warms caches, pages and compiled code
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def transform_floors(k=1600, d=108, patches=729, n_images=30, repeats=REPEATS):
    """What any exact float32 k-means transform of ``N_SPEED`` images must spend, per step.

    On random data of the transform's shapes (``patches`` per image, ``d``
    values per patch, ``k`` centroids), each step alone on all cores, best of
    ``repeats``, scaled from ``n_images``: the patch-by-centroid sgemm; the
    same with the d x d whitening appended as extra columns (the distances
    need each whitened patch's squared norm); the square root of every
    patch-to-centroid distance (the triangle activation's mean needs them all).
    """
    from numba import njit, prange

    @njit(fastmath=True, parallel=True, cache=False)
    def sqrt_sums(S, out):
        for i in prange(S.shape[0]):
            s = np.float32(0)
            for j in range(S.shape[1]):
                s += np.sqrt(S[i, j])
            out[i] = s

    rng = np.random.default_rng(SEED)
    rows = n_images * patches
    A = rng.standard_normal((rows, d), dtype=np.float32)
    scale = N_SPEED / n_images
    out = {}
    for cols, key in ((k, "sgemm_s"), (k + d, "sgemm_with_whitening_s")):
        B = rng.standard_normal((d, cols), dtype=np.float32)
        S = np.empty((rows, cols), dtype=np.float32)
        out[key] = _best_of(lambda: np.matmul(A, B, out=S), repeats) * scale
    D2 = np.abs(S[:, :k])
    sums = np.empty(rows, dtype=np.float32)
    out["sqrt_s"] = _best_of(lambda: sqrt_sums(D2, sums), repeats) * scale
    out["floor_s"] = out["sgemm_with_whitening_s"] + out["sqrt_s"]
    return [{"section": "features", "row": "floor",
             "what": f"exact k-means transform, K={k}, {patches} patches x {d} values, "
                     f"{N_SPEED} images", **out, "load1": _load()}]


def _floor(f, quick):
    k, d = f.centroids_.shape
    h, w, _ = f.image_shape_
    patches = (h - f.patch_size + 1) * (w - f.patch_size + 1)
    return transform_floors(k, d, patches, n_images=5 if quick else 30)[0]


def speed_kmeans(f, X, seconds_all, quick):
    sub = X[:20 if quick else 300]
    t = time.perf_counter()
    f.transform(sub)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    _numpy_prototype(f, sub)
    proto = time.perf_counter() - t
    n = len(X)
    return [{"section": "features", "row": "speed",
             "what": f"kmeans K={f.n_centroids}, {n} images timed, scaled to {N_SPEED}",
             "imgcls_s": seconds_all * N_SPEED / n,
             "numpy_prototype_s": proto * N_SPEED / len(sub),
             "floor_s": _floor(f, quick)["floor_s"],
             "speedup": proto / ours, "ratio_on": f"{len(sub)} images", "load1": _load()}]


def linear_accuracy(F, y, tr, va, grid, name, model="softmax", extra=None, mirrored_va=None):
    """imgcls's classifier on ``F[tr]`` (plus ``extra`` = (F_more, y_more)) per ``reg``, scored on ``F[va]``.

    ``mirrored_va``: the features of the mirrored validation images, for the
    test-time mirror accuracy (mean class scores of an image and its mirror).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from imgcls.linear import LinearSVM, Softmax

    Xtr, ytr = np.asarray(F[tr]), y[tr]
    if extra is not None:
        Xtr, ytr = np.concatenate([Xtr, extra[0]]), np.concatenate([ytr, extra[1]])
    Xva = np.asarray(F[va])
    cls = {"softmax": Softmax, "svm": LinearSVM}[model]
    scores, fits, mirrored = {}, {}, {}
    for reg in grid:
        clf = cls(optimizer="lbfgs", standardize=True, reg=reg, epochs=LBFGS_ITERATIONS,
                  random_state=SEED)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with measure() as m:
                clf.fit(Xtr, ytr)
        scores[reg] = float(clf.score(Xva, y[va]))
        if mirrored_va is not None:
            mean_scores = (clf.class_scores(Xva) + clf.class_scores(mirrored_va)) / 2
            mirrored[reg] = float(np.mean(clf.classes_[mean_scores.argmax(1)] == y[va]))
        fits[reg] = (m.seconds, m.peak_extra_mib, float(clf.score(Xtr, ytr)))
    best = max(grid, key=lambda r: scores[r])
    row = {"section": "features", "row": "accuracy", "what": f"{name}, imgcls {cls.__name__}",
           "val_by_reg": {r: round(v, 4) for r, v in scores.items()}, "reg": best,
           "n_train": len(ytr), "fit_s": fits[best][0], "fit_peak_extra_mib": fits[best][1],
           "train_acc": fits[best][2], "val_acc": scores[best], "load1": _load()}
    if mirrored:
        row["val_acc_mirrored"] = mirrored[best]
    return row


def linearsvc_accuracy(F, y, tr, va, grid, name):
    """scikit-learn's LinearSVC (squared hinge, one-vs-rest) on standardised features, per C."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    mean, sd = F[tr].mean(0), np.sqrt(F[tr].var(0) + 0.01)  # the paper's sqrt(var + 0.01)
    scores = {}
    for C in grid:
        clf = LinearSVC(C=C, dual=False, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit((F[tr] - mean) / sd, y[tr])
        scores[C] = float((clf.predict((F[va] - mean) / sd) == y[va]).mean())
    best = max(grid, key=lambda c: scores[c])
    return {"section": "features", "row": "accuracy", "what": f"{name}, scikit-learn LinearSVC",
            "val_by_C": {c: round(v, 4) for c, v in scores.items()}, "C": best,
            "val_acc": scores[best], "load1": _load()}


def run(data=None, quick=False, stages=("speed", "hog", "kmeans"), cache=None,
        n_centroids=None, pool_grid=2, flips=False, whiten_eps=0.1, reg_grid=REG_GRID_KMEANS):
    from imgcls.features import KMeansFeatures, make_features

    if stages == ("floor",):  # shapes only, no data
        return transform_floors(k=n_centroids or 1600)
    X, y, tr, va = load_cifar()
    if quick:
        pick = np.random.default_rng(SEED)
        keep = np.sort(np.concatenate([pick.choice(tr, 1800, replace=False),
                                       pick.choice(va, 200, replace=False)]))
        X, y = X[keep], y[keep]
        tr, va = np.flatnonzero(np.isin(keep, tr)), np.flatnonzero(np.isin(keep, va))
    rows = []
    if "speed" in stages:
        rows += speed_hog(X, quick)
    if "hog" in stages:
        u = make_features("hog+color").fit(X[tr])
        F = u.transform(X)
        rows.append(linear_accuracy(F, y, tr, va, REG_GRID_HOG, "hog+color", model="svm"))
        rows.append(linearsvc_accuracy(F, y, tr, va, C_GRID_HOG, "hog+color"))
    if "kmeans" in stages:
        k = n_centroids or (100 if quick else 1600)
        f = KMeansFeatures(n_centroids=k, pool_grid=pool_grid, whiten_eps=whiten_eps,
                           random_state=SEED)
        with measure() as mfit:
            f.fit(X[tr])
        f.transform(X[:10])
        with measure() as mt:
            F = f.transform(X)
        extra = mirrored_va = None
        if flips:
            extra = (f.transform(np.ascontiguousarray(X[tr][:, :, ::-1])), y[tr])
            mirrored_va = f.transform(np.ascontiguousarray(X[va][:, :, ::-1]))
        if cache:
            np.save(Path(cache) / f"kmeans{k}g{pool_grid}e{whiten_eps:g}.npy", F)
        rows += speed_kmeans(f, X, mt.seconds, quick)
        rows[-1].update(fit_s=mfit.seconds, k_iter=f.n_iter_, peak_extra_mib=mt.peak_extra_mib)
        what = (f"kmeans K={k}, pool {pool_grid}x{pool_grid}, whiten_eps {whiten_eps:g}"
                f"{', flips' if flips else ''}")
        rows.append(linear_accuracy(F, y, tr, va, reg_grid, what, extra=extra,
                                    mirrored_va=mirrored_va))
    return rows


def main(argv=None):
    from .common import markdown_table

    ap = argparse.ArgumentParser(prog="python -m bench.features")
    ap.add_argument("--stage", default="speed,hog,kmeans")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cache", default=None, help="folder to save the k-means features in")
    ap.add_argument("--centroids", type=int, default=None, help="K (default 1600; 100 --quick)")
    ap.add_argument("--pool-grid", type=int, default=2)
    ap.add_argument("--whiten-eps", type=float, default=0.1,
                    help="ZCA regulariser (the paper's 0.1; 1.0 damps the JPEG copies' noise)")
    ap.add_argument("--flips", action="store_true",
                    help="train the k-means classifier on mirrored training images too, and "
                         "report the validation accuracy with test-time mirrors")
    ap.add_argument("--reg", default=None,
                    help="comma-separated reg grid of the k-means classifier "
                         f"(default {','.join(f'{r:g}' for r in REG_GRID_KMEANS)})")
    a = ap.parse_args(argv)
    reg_grid = tuple(float(r) for r in a.reg.split(",")) if a.reg else REG_GRID_KMEANS
    rows = run(None, a.quick, tuple(a.stage.split(",")), a.cache, a.centroids, a.pool_grid,
               a.flips, a.whiten_eps, reg_grid)
    print(markdown_table(rows), flush=True)


if __name__ == "__main__":
    main()
