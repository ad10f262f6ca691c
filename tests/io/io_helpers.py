"""Test helpers: a stand-in estimator allowed in model files only through a test registry.

imgcls's own estimators are developed alongside; these tests must not depend on
them, so the round trip and every corruption case run against ``Centroid``,
which follows the same contract (sklearn conventions, learned attributes that
are arrays or JSON values, an ``image_shape_`` tuple).
"""

from __future__ import annotations

import json
import struct
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from imgcls._validation import flatten_images


class Centroid(ClassifierMixin, BaseEstimator):
    """Nearest class mean, with enough kinds of learned attributes to test the codec."""

    _parameter_constraints = {
        "shrink": [Interval(Real, 0, 1, closed="both")],
        "metric": [StrOptions({"l1", "l2"})],
        "tags": [tuple, None],
    }

    def __init__(self, shrink=0.0, metric="l2", tags=("a", 1)):
        self.shrink = shrink
        self.metric = metric
        self.tags = tags

    def fit(self, X, y):
        self._validate_params()
        X2, self.image_shape_ = flatten_images(np.asarray(X))
        X2 = np.asarray(X2, dtype=np.float64)
        y = np.asarray(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        self.n_features_in_ = X2.shape[1]
        self.mean_ = X2.mean(axis=0)
        centroids = np.stack([X2[yi == c].mean(axis=0) for c in range(len(self.classes_))])
        self.W_ = ((1 - self.shrink) * centroids + self.shrink * self.mean_).astype(np.float32)
        self.counts_ = np.bincount(yi).astype(np.int32)
        self.history_ = [{"epoch": 1, "loss": 0.5, "train_acc": 0.9, "val_acc": None}]
        self.extras_ = {0: (1, 2), "nan": float("nan"), "n": np.int64(7)}
        self.labels_text_ = np.array([str(c) for c in self.classes_])
        self._cache = object()  # private: never saved
        return self

    def decision_function(self, X):
        check_is_fitted(self)
        X2, _ = flatten_images(np.asarray(X))
        X2 = np.asarray(X2, dtype=np.float64)
        d = ((X2[:, None, :] - self.W_[None].astype(np.float64)) ** 2).sum(axis=2)
        return -d

    def predict(self, X):
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


REGISTRY = {"Centroid": Centroid}


def data(n=40, shape=(4, 4, 1), n_classes=3, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = np.arange(n) % n_classes
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


# ---------------------------------------------------------------- crafting files

def read_parts(path):
    """(header dict, data bytes after the header) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_parts(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def edit_metadata(path, change, rehash=True):
    """Rewrite a model file's metadata document with ``change(doc)``, as an attacker would.

    With ``rehash`` the metadata SHA-256 is recomputed, so that the deeper checks
    (allow-list, params, versions) are what catches the edit.
    """
    from imgcls.io.modelfile import _metadata_hash

    header, body = read_parts(path)
    doc = json.loads(header["__metadata__"]["imgcls"])
    change(doc)
    if rehash:
        doc["metadata_sha256"] = _metadata_hash(doc)
    header["__metadata__"]["imgcls"] = json.dumps(doc)
    write_parts(path, header, body)
