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
  subset, scaled the same way.
* ``accuracy``: a linear classifier on standardised features; its
  regularisation is chosen on an inner 40,000 / 5,000 split of the 45,000,
  then refitted on the 45,000 and scored once on the validation 5,000.

Each row carries the 1-minute load average when it ended: the machine is
shared, so wall times are inflated by other work (the ratios less so).

    python -m bench --only features            # all rows (tens of minutes)
    python -m bench.features --stage speed     # one part; --quick for a subset
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
C_GRID_HOG = (0.01, 0.1, 1.0)
C_GRID_KMEANS = (1e-3, 1e-2, 1e-1)


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
             "speedup": proto / ours, "ratio_on": f"{len(sub)} images", "load1": _load()}]


def linear_accuracy(F, y, tr, va, grid, name, svm=False):
    """Standardise on the 45,000, choose C on an inner split, refit, score on validation.

    ``svm``: scikit-learn's ``LinearSVC`` (squared hinge, one-vs-rest, primal),
    else multinomial ``LogisticRegression`` (L-BFGS).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC
    from sklearn.model_selection import train_test_split

    def fit(rows, C):
        mean = F[rows].mean(0)
        sd = np.sqrt(F[rows].var(0) + 0.01)  # the paper's code: sqrt(var + 0.01)
        clf = (LinearSVC(C=C, dual=False, max_iter=2000) if svm
               else LogisticRegression(C=C, max_iter=300, tol=1e-4))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit((F[rows] - mean) / sd, y[rows])
        return lambda idx: float((clf.predict((F[idx] - mean) / sd) == y[idx]).mean()), clf

    inner_tr, inner_va = train_test_split(tr, test_size=min(N_VAL, len(tr) // 9), stratify=y[tr],
                                          random_state=SEED)
    scores = {}
    for C in grid:
        score, _ = fit(inner_tr, C)
        scores[C] = score(inner_va)
    best = max(grid, key=lambda c: scores[c])
    with measure() as m:
        score, clf = fit(tr, best)
    return {"section": "features", "row": "accuracy", "what": name,
            "inner_val": {c: round(s, 4) for c, s in scores.items()}, "C": best,
            "fit_s": m.seconds, "train_acc": score(tr), "val_acc": score(va), "load1": _load()}


def run(data=None, quick=False, stages=("speed", "hog", "kmeans"), cache=None):
    from imgcls.features import KMeansFeatures, make_features

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
        rows.append(linear_accuracy(F, y, tr, va, C_GRID_HOG, "hog+color, LinearSVC", svm=True))
    if "kmeans" in stages:
        k = 100 if quick else 1600
        f = KMeansFeatures(n_centroids=k, random_state=SEED)
        with measure() as mfit:
            f.fit(X[tr])
        f.transform(X[:10])
        with measure() as mt:
            F = f.transform(X)
        if cache:
            np.save(Path(cache) / f"kmeans{k}.npy", F)
        rows += speed_kmeans(f, X, mt.seconds, quick)
        rows[-1].update(fit_s=mfit.seconds, k_iter=f.n_iter_, peak_extra_mib=mt.peak_extra_mib)
        rows.append(linear_accuracy(F, y, tr, va, C_GRID_KMEANS, f"kmeans K={k}, logistic"))
    return rows


def main(argv=None):
    from .common import markdown_table

    ap = argparse.ArgumentParser(prog="python -m bench.features")
    ap.add_argument("--stage", default="speed,hog,kmeans")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cache", default=None, help="folder to save the k-means features in")
    a = ap.parse_args(argv)
    rows = run(None, a.quick, tuple(a.stage.split(",")), a.cache)
    print(markdown_table(rows), flush=True)


if __name__ == "__main__":
    main()
