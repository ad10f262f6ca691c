"""Linear section: imgcls Softmax / LinearSVM against scikit-learn's linear models on MNIST.

Protocol (one process, so all times share the machine's load):

1. Hyperparameters of imgcls are chosen on validation data only: a seeded
   1/6 of the 60,000 training images is held out, and a 3 x 3 grid of
   ``learning_rate`` x ``reg`` is trained for ``GRID_EPOCHS`` epochs on the
   other 5/6 and scored on it (rows ``grid``).
2. The chosen values are refitted on all 60,000 training images (same number of
   epochs, same seed); that fit is timed (``fit_s``: from the uint8 images,
   preprocessing included) and scored once on the 10,000 test images.  A row
   with the default parameters (no search) is added for reference.
3. scikit-learn ``SGDClassifier(loss="hinge")``, ``SGDClassifier(loss="log_loss")``
   ``LogisticRegression()`` (multinomial, L-BFGS) and, when the environment
   variable ``IMGCLS_BENCH_LINEARSVC`` is set, ``LinearSVC(multi_class="crammer_singer")``
   (minutes on the full set), with their default hyperparameters, get the same preprocessing (pixels / 255, mean training
   image subtracted, float64, done outside their timing).
4. ``anchor`` / ``speedup``: for each imgcls model, the fastest scikit-learn
   model whose test accuracy is at least imgcls's (or, if none reaches it, the
   most accurate one), and its fit time divided by imgcls's fit time.
5. Defaults on digits (rows ``digits 5-fold CV``): ``Softmax()`` / ``LinearSVM()``
   against ``LogisticRegression()`` / ``LinearSVC()`` in ``cross_val_score(cv=5)``
   on scikit-learn's digits (``val_acc`` holds the mean CV accuracy).
6. Feature scale: default fits on synthetic 50,000 x 6,400 float32 features
   shaped like K-means triangle activations (x 16,000 too with
   ``IMGCLS_BENCH_FEATURES_FULL``; 5,000 rows with ``--quick``), with fit time
   and peak resident memory above the level before the fit (X itself excluded).
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from .common import measure

GRID_LR = (0.01, 0.03, 0.1)
GRID_REG = (1e-5, 1e-4, 1e-3)
GRID_EPOCHS = 3
SEED = 0


def _our_models():
    from imgcls.linear import LinearSVM, Softmax

    return {"Softmax": Softmax, "LinearSVM": LinearSVM}


def _sk_models(quick):
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.svm import LinearSVC

    models = {
        "SGDClassifier(hinge)": lambda: SGDClassifier(loss="hinge", random_state=SEED),
        "SGDClassifier(log_loss)": lambda: SGDClassifier(loss="log_loss",
                                                         random_state=SEED),
        "LogisticRegression": lambda: LogisticRegression(),
    }
    if not quick and os.environ.get("IMGCLS_BENCH_LINEARSVC"):
        # Crammer-Singer liblinear ran for over 5 minutes on the full set here
        # (without converging at max_iter=1000), so it is opt-in
        models["LinearSVC(crammer_singer)"] = lambda: LinearSVC(multi_class="crammer_singer",
                                                                random_state=SEED)
    return models


def _row(tool, model, **kw):
    row = {"section": "linear", "tool": tool, "model": model, "params": "", "val_acc": None,
           "fit_s": None, "test_acc": None, "anchor": "", "speedup": None,
           "peak_extra_MiB": None}
    row.update(kw)
    return row


def run(data, quick):
    Xtr, ytr = data.X_train, np.asarray(data.y_train)
    Xte, yte = data.X_test, np.asarray(data.y_test)
    if quick:
        Xtr, ytr, Xte, yte = Xtr[:6000], ytr[:6000], Xte[:2000], yte[:2000]
    n = len(ytr)
    perm = np.random.default_rng(SEED).permutation(n)
    val, tr = np.sort(perm[: n // 6]), np.sort(perm[n // 6:])
    ours = _our_models()
    rows = []

    # warm-up: load the compiled numba kernels (cached on disk) outside any timing
    for cls in ours.values():
        cls(epochs=1).fit(Xtr[:600], ytr[:600]).predict(Xte[:10])

    fitted = {}
    for name, cls in ours.items():
        t0 = time.perf_counter()
        results = []
        for lr in GRID_LR:
            for reg in GRID_REG:
                est = cls(learning_rate=lr, reg=reg, epochs=GRID_EPOCHS, random_state=SEED)
                est.fit(Xtr[tr], ytr[tr])
                results.append((est.score(Xtr[val], ytr[val]), lr, reg))
        grid_s = time.perf_counter() - t0
        best_acc, lr, reg = max(results, key=lambda r: r[0])  # ties: the first in grid order
        rows.append(_row("imgcls", f"{name} grid", params=f"{len(results)} fits on {len(tr)}",
                         val_acc=best_acc, fit_s=grid_s))
        params = {"learning_rate": lr, "reg": reg, "epochs": GRID_EPOCHS, "random_state": SEED}
        with measure() as m:
            est = cls(**params).fit(Xtr, ytr)
        acc = est.score(Xte, yte)
        fitted[name] = (acc, m.seconds)
        rows.append(_row("imgcls", name, params=f"lr={lr:g} reg={reg:g} epochs={GRID_EPOCHS}",
                         val_acc=best_acc, fit_s=m.seconds, test_acc=acc,
                         peak_extra_MiB=m.peak_extra_mib))
        with measure() as m:
            est = cls(random_state=SEED).fit(Xtr, ytr)
        rows.append(_row("imgcls", f"{name} defaults", params="(no search)", fit_s=m.seconds,
                         test_acc=est.score(Xte, yte), peak_extra_MiB=m.peak_extra_mib))

    # scikit-learn on the same preprocessing, computed outside their timing
    mean = (Xtr.reshape(n, -1).astype(np.float64) / 255).mean(axis=0)
    Xtr_f = Xtr.reshape(n, -1).astype(np.float64) / 255 - mean
    Xte_f = Xte.reshape(len(yte), -1).astype(np.float64) / 255 - mean
    sk = {}
    for name, make in _sk_models(quick).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at default max_iter
            with measure() as m:
                est = make().fit(Xtr_f, ytr)
        acc = float(est.score(Xte_f, yte))
        sk[name] = (acc, m.seconds)
        rows.append(_row("scikit-learn", name, params="defaults", fit_s=m.seconds,
                         test_acc=acc, peak_extra_MiB=m.peak_extra_mib))

    for row in rows:
        if row["tool"] != "imgcls" or row["model"] not in fitted:
            continue
        acc, secs = fitted[row["model"]]
        reach = [(t, k) for k, (a, t) in sk.items() if a >= acc]
        if reach:
            t, anchor = min(reach)
        else:  # nobody reaches imgcls's accuracy: compare with the most accurate
            anchor = max(sk, key=lambda k: sk[k][0])
            t = sk[anchor][1]
            anchor += " (less accurate)"
        row["anchor"] = anchor
        row["speedup"] = t / secs
    rows += digits_cv_rows()
    dims = FEATURE_DIMS_FULL if os.environ.get("IMGCLS_BENCH_FEATURES_FULL") else None
    rows += feature_scale_rows(quick, dims)
    return rows


def digits_cv_rows():
    """5-fold CV on scikit-learn's digits: imgcls's defaults against scikit-learn's."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    from imgcls.linear import LinearSVM, Softmax

    X, y = load_digits(return_X_y=True)
    rows = []
    for tool, name, make in [("imgcls", "Softmax", lambda: Softmax(random_state=SEED)),
                             ("scikit-learn", "LogisticRegression", LogisticRegression),
                             ("imgcls", "LinearSVM", lambda: LinearSVM(random_state=SEED)),
                             ("scikit-learn", "LinearSVC", LinearSVC)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at default max_iter
            with measure() as m:
                acc = float(cross_val_score(make(), X, y, cv=5).mean())
        rows.append(_row(tool, f"{name} digits 5-fold CV", params="defaults", val_acc=acc,
                         fit_s=m.seconds))
    return rows


# ---------------------------------------------------------------- feature scale
#: The issue's sizes: K-means features of Coates et al. with K=1,600 (4 x K = 6,400
#: features) on CIFAR-10's 50,000 training images; K=4,000 gives 16,000.
FEATURE_ROWS = 50_000
FEATURE_DIMS = (6_400,)
FEATURE_DIMS_FULL = (6_400, 16_000)


def synthetic_features(n, d, n_classes=10, seed=SEED):
    """Float32 (n, d) non-negative sparse-ish features with labels from a hidden linear model.

    Shaped like triangle-activation K-means features (non-negative, about half
    zeros); generated in row blocks, so the only large allocation is X itself.
    """
    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=np.float32)
    W = rng.standard_normal((n_classes, d)).astype(np.float32)
    y = np.empty(n, dtype=np.int64)
    block = 2048
    for i in range(0, n, block):
        Z = rng.standard_normal((min(block, n - i), d), dtype=np.float32)
        np.maximum(Z, 0, out=Z)
        X[i:i + block] = Z
        scores = Z @ W.T + rng.standard_normal((len(Z), n_classes), dtype=np.float32) * 8
        y[i:i + block] = np.argmax(scores, axis=1)
    return X, y


def feature_scale_rows(quick, dims=None):
    """Default ``Softmax()`` / ``LinearSVM()`` fits on 50,000 x d float32 features."""
    n = 5_000 if quick else FEATURE_ROWS
    rows = []
    for d in dims or FEATURE_DIMS:
        X, y = synthetic_features(n + 5_000, d)
        Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
        for name, cls in _our_models().items():
            cpu = time.process_time()
            with measure() as m:
                est = cls(random_state=SEED).fit(Xtr, ytr)
            # CPU seconds of every thread: on a shared machine, wall time includes waiting
            cpu = time.process_time() - cpu
            rows.append(_row("imgcls", f"{name} defaults, {n} x {d} float32 features",
                             params=f"epochs={est.n_iter_} (auto), {cpu:.0f} CPU s",
                             fit_s=m.seconds, test_acc=float(est.score(Xte, yte)),
                             peak_extra_MiB=m.peak_extra_mib))
        del X, Xtr, Xte
    return rows
