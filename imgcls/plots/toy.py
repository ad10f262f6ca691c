"""Two-dimensional toy data sets, including the lecture's hard cases for a linear classifier."""

from __future__ import annotations

import numpy as np


def _xor(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Quadrants: class 1 where the two coordinates have opposite signs.  Points
    # keep a small gap from the axes so the classes do not touch.
    u = rng.uniform(-1.0, 1.0, size=(n, 2))
    X = np.sign(u) * (0.08 + 0.92 * np.abs(u))
    y = (X[:, 0] * X[:, 1] < 0).astype(np.int64)
    return X, y


def _ring(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Class 0 fills a disc, class 1 a ring around it: no line separates them.
    n_in = n // 3
    r = np.concatenate([0.45 * np.sqrt(rng.uniform(0, 1, n_in)),
                        np.sqrt(rng.uniform(0.70 ** 2, 1.0 ** 2, n - n_in))])
    theta = rng.uniform(0, 2 * np.pi, n)
    X = np.column_stack([r * np.cos(theta), r * np.sin(theta)])
    y = np.concatenate([np.zeros(n_in, np.int64), np.ones(n - n_in, np.int64)])
    return X, y


_MODES = np.array([[-0.6, -0.5], [0.6, -0.5], [0.0, 0.65]])


def _three_modes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Class 1 lives in three separate clusters, class 0 everywhere around them:
    # one template per class cannot describe a class with several modes.
    n_modes = n // 3
    which = rng.integers(0, 3, n_modes)
    inside = _MODES[which] + rng.normal(0.0, 0.12, size=(n_modes, 2))
    outside = np.empty((0, 2))
    while len(outside) < n - n_modes:
        cand = rng.uniform(-1.2, 1.2, size=(2 * n, 2))
        far = np.min(np.linalg.norm(cand[:, None, :] - _MODES[None], axis=2), axis=1) > 0.38
        outside = np.concatenate([outside, cand[far]])
    outside = outside[: n - n_modes]
    X = np.concatenate([inside, outside])
    y = np.concatenate([np.ones(n_modes, np.int64), np.zeros(n - n_modes, np.int64)])
    return X, y


def _blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Three Gaussian blobs: the easy, linearly separable case.
    centres = np.array([[-0.6, -0.4], [0.6, -0.4], [0.0, 0.6]])
    y = np.arange(n, dtype=np.int64) % 3
    X = centres[y] + rng.normal(0.0, 0.25, size=(n, 2))
    return X, y


_MAKERS = {"xor": _xor, "ring": _ring, "three_modes": _three_modes, "blobs": _blobs}


def toy_datasets(seed: int = 0, n_samples: int = 200) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Small 2-D classification problems for decision-boundary pictures.

    Parameters
    ----------
    seed : int, default 0
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same data.
    n_samples : int, default 200
        Points per data set (at least 12).

    Returns
    -------
    datasets : dict of str -> (X, y)
        ``X`` float64 of shape (n_samples, 2) in about [-1.2, 1.2]^2, ``y``
        int64 of shape (n_samples,).  Keys, in order:

        - ``"xor"``: two classes in alternating quadrants (not linearly separable);
        - ``"ring"``: one class in a disc, the other in a ring around it;
        - ``"three_modes"``: one class in three separate clusters among the other;
        - ``"blobs"``: three Gaussian blobs, one per class (linearly separable).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 12:
        raise ValueError(f"n_samples: must be an integer of at least 12, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    out = {}
    for name, make in _MAKERS.items():
        X, y = make(rng, int(n_samples))
        out[name] = (np.ascontiguousarray(X, dtype=np.float64), y)
    return out
