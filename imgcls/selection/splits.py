"""Seeded, stratified splits: one train/validation split, and k folds.

Both wrap scikit-learn (``train_test_split(stratify=...)`` and
``StratifiedKFold(shuffle=True)``), adding imgcls's input checks: a split that
cannot be stratified is a :class:`~imgcls.errors.ConfigError` naming the class
and the counts, not a scikit-learn traceback.

These functions are only ever given *training* data: the test split of a
:class:`~imgcls.datasets.Dataset` is kept apart and evaluated once, at the end,
by :func:`imgcls.pipeline.run_study`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["train_val_split", "stratified_kfold", "stratified_order", "contiguous_rows",
           "check_seed"]


def check_seed(seed) -> int:
    """Return ``seed`` as an int, or raise ConfigError for anything else."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"y must be 1-D (n_samples,), got shape {y.shape}")
    if y.shape[0] == 0:
        raise ConfigError("y is empty: nothing to split")
    return y


def train_val_split(X, y, val_size: float | int = 0.2, seed: int = 0):
    """Split training data into a training part and a validation part, per class.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Training samples (images (n, H, W, C) or features (n, d)).
    y : array-like of shape (n_samples,)
        Their labels.
    val_size : float in (0, 1) or int
        The validation part: a fraction of the samples, or a number of samples.
    seed : int
        The same seed gives the same split.

    Returns
    -------
    X_train, X_val, y_train, y_val : ndarrays
        In scikit-learn's order; every class keeps its proportion in both parts.

    Raises
    ------
    ConfigError
        ``val_size`` outside its range, or a class too small to appear in both parts.
    """
    from sklearn.model_selection import train_test_split

    y = _labels(y)
    seed = check_seed(seed)
    n = y.shape[0]
    if len(X) != n:
        raise ConfigError(f"X has {len(X)} samples but y has {n}")
    if isinstance(val_size, (bool, np.bool_)):
        raise ConfigError(f"val_size must be a fraction in (0, 1) or a count, got {val_size!r}")
    if isinstance(val_size, (int, np.integer)):
        if not 1 <= val_size < n:
            raise ConfigError(f"val_size={val_size} samples must be between 1 and {n - 1} "
                              f"(the training data has {n})")
    elif not (isinstance(val_size, (float, np.floating)) and 0.0 < val_size < 1.0):
        raise ConfigError(f"val_size must be a fraction in (0, 1) or a count, got {val_size!r}")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise ConfigError(f"class {classes[counts.argmin()].item()!r} has only {counts.min()} sample; "
                          "a stratified validation split needs at least 2 per class")
    n_val = val_size if isinstance(val_size, (int, np.integer)) else int(np.ceil(val_size * n))
    if n_val < len(classes) or n - n_val < len(classes):
        raise ConfigError(f"val_size={val_size!r} gives {n_val} validation and {n - n_val} "
                          f"training samples, fewer than the {len(classes)} classes; "
                          "each part needs one sample per class")
    return train_test_split(X, y, test_size=val_size, random_state=seed, shuffle=True, stratify=y)


def stratified_kfold(y, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified k-fold split of training labels.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    folds : int >= 2
    seed : int
        Samples are shuffled (within each class) with this seed before splitting.

    Returns
    -------
    splits : list of (train_idx, val_idx)
        ``folds`` pairs of int64 index arrays; every sample is in exactly one
        ``val_idx``.  The same splits scikit-learn's
        ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` makes, so they
        can be handed to ``GridSearchCV(cv=...)`` for a like-for-like comparison.

    Raises
    ------
    ConfigError
        ``folds`` is not an integer >= 2, or exceeds the size of the smallest
        class (then some fold would have no sample of that class to validate on).
    """
    from sklearn.model_selection import StratifiedKFold

    y = _labels(y)
    seed = check_seed(seed)
    if isinstance(folds, (bool, np.bool_)) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    classes, counts = np.unique(y, return_counts=True)
    if folds > counts.min():
        raise ConfigError(f"folds={folds} exceeds the {counts.min()} samples of class "
                          f"{classes[counts.argmin()].item()!r}; use at most {counts.min()} folds")
    skf = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    return [(tr.astype(np.int64), va.astype(np.int64))
            for tr, va in skf.split(np.zeros((y.shape[0], 1)), y)]


def stratified_order(y, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``y``'s positions whose every prefix is stratified.

    Each class's positions are shuffled and spread evenly through the order
    (the j-th of a class's n_c samples sits at (j + 1/2) / n_c of the way), so
    the first m positions hold m * n_c / n of each class, give or take
    (1 + n_classes * n_c / n) / 2: within one sample when the classes are
    balanced.
    A subset "the first m" is then a stratified random subset, and nested
    subsets of a feature matrix laid out in this order are row slices: views,
    not copies.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    seed : int

    Returns
    -------
    order : ndarray of shape (n_samples,), int64
    """
    y = _labels(y)
    rng = np.random.default_rng(check_seed(seed))
    n = y.shape[0]
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    # grouped by class, shuffled within each: a shuffle, then a stable sort by class
    shuffled = rng.permutation(n)
    grouped = shuffled[np.argsort(inverse[shuffled], kind="stable")]
    rank = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # j within its class
    position = np.empty(n)
    position[grouped] = (rank + 0.5) / np.repeat(counts, counts)
    # equal positions (classes of equal size) in a random class order
    return np.lexsort((rng.permutation(n), position)).astype(np.int64)


def contiguous_rows(X, rows):
    """``X[rows]``: a view when ``rows`` are consecutive increasing positions, else a copy.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
    rows : array of int

    Returns
    -------
    ndarray of shape (len(rows), ...)
    """
    rows = np.asarray(rows)
    if rows.ndim == 1 and rows.size and rows[-1] - rows[0] == rows.size - 1 \
            and (rows.size == 1 or bool(np.all(np.diff(rows) == 1))):
        return X[int(rows[0]):int(rows[0]) + rows.size]
    return X[rows]
