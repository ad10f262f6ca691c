"""Feature sets in the study: extraction fitted on training rows only, and whole pipelines.

:func:`extract_features` turns a :class:`~imgcls.datasets.Dataset` of images
into a Dataset of float32 feature rows with a transformer fitted on the
TRAINING split alone (k-means centroids, whitening, any standardisation never
see a test image); the study's selection then cuts its folds and validation
split from those training rows, as it does from pixels.

:class:`ImagePipeline` is the scikit-learn ``Pipeline`` that the study saves
(feature transformer, then classifier) and that :func:`imgcls.io.load` returns
for a pipeline file: it also answers what ``imgcls predict`` and the
evaluation helpers ask of a bare classifier (``image_shape_``,
``predict_topk``, ``class_scores``, ``kneighbors``, ``class_names_``), each
run on the transformed input.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if

from ..errors import ConfigError

__all__ = ["ImagePipeline", "FeatureSet", "parse_feature_sets", "extract_features",
           "feature_params"]


def _final_has(attr: str):
    return lambda self: hasattr(self._final_estimator, attr)


class ImagePipeline(Pipeline):
    """A ``Pipeline`` of imgcls feature transformers and one imgcls classifier.

    Behaves as :class:`sklearn.pipeline.Pipeline`; in addition it forwards the
    classifier's imgcls methods through the transformers, and says which image
    shape its first step takes.
    """

    @property
    def image_shape_(self):
        """The image shape (H, W, C) the first step was fitted on (None: feature vectors)."""
        from sklearn.pipeline import FeatureUnion

        first = self.steps[0][1]
        while isinstance(first, (Pipeline, FeatureUnion)):  # all branches take the same input
            first = first.steps[0][1] if isinstance(first, Pipeline) \
                else first.transformer_list[0][1]
        return getattr(first, "image_shape_", None)

    @property
    def class_names_(self):
        return getattr(self._final_estimator, "class_names_", None)

    def _features(self, X):
        for _, _, step in self._iter(with_final=False, filter_passthrough=True):
            X = step.transform(X)
        return X

    @available_if(_final_has("predict_topk"))
    def predict_topk(self, X, n=5):
        """The final classifier's ``predict_topk`` on the transformed ``X``."""
        return self._final_estimator.predict_topk(self._features(X), n=n)

    @available_if(_final_has("class_scores"))
    def class_scores(self, X):
        """The final classifier's ``class_scores`` on the transformed ``X``."""
        return self._final_estimator.class_scores(self._features(X))

    @available_if(_final_has("kneighbors"))
    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The final kNN's ``kneighbors`` on the transformed ``X``."""
        return self._final_estimator.kneighbors(None if X is None else self._features(X),
                                                n_neighbors=n_neighbors,
                                                return_distance=return_distance)


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """One entry of ``--features``: its name (``"hog+color"``) and its transformer."""

    name: str
    transformer: object


def parse_feature_sets(spec, params: dict | None = None) -> list[FeatureSet]:
    """``"pixels,hog+color"`` -> one :class:`FeatureSet` per comma-separated name.

    Parameters
    ----------
    spec : str or sequence of str
    params : dict, optional
        Parameters per registered name (``{"kmeans": {"n_centroids": 400}}``),
        applied wherever that name appears.

    Raises
    ------
    ConfigError
        An empty list, an unknown feature name (the message lists the known
        ones), or a feature set given twice.
    """
    from ..features import make_features
    from ..features.union import feature_names

    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if isinstance(n, str) and n.strip()]
    if not names:
        raise ConfigError(f"features: expected names such as 'pixels,hog+color', got {spec!r}")
    canon = ["+".join(feature_names(n)) for n in names]
    if len(set(canon)) != len(canon):
        raise ConfigError(f"features: a feature set is named twice in {spec!r}")
    params = dict(params or {})
    sets = []
    for name in canon:
        mine = {k: v for k, v in params.items() if k in feature_names(name)}
        sets.append(FeatureSet(name, make_features(name, mine)))
    return sets


def feature_params(transformer, name: str) -> dict:
    """Parameters per feature name, JSON-able (``{"hog": {...}, "color": {...}}``).

    ``name`` is the feature set's name, the key of a single transformer's parameters.
    """
    from sklearn.pipeline import FeatureUnion

    if isinstance(transformer, FeatureUnion):
        return {part: t.get_params(deep=False) for part, t in transformer.transformer_list}
    return {name: transformer.get_params(deep=False)}


def _seed(transformer, seed: int):
    # a FeatureUnion's deep parameters name each part's: "kmeans__random_state"
    keys = [k for k in transformer.get_params(deep=True)
            if k == "random_state" or k.endswith("__random_state")]
    return transformer.set_params(**{k: seed for k in keys}) if keys else transformer


def extract_features(ds, feature_set: FeatureSet, seed: int = 0,
                     log: Callable[[str], None] | None = None, fit_rows=None, order=None):
    """Fit ``feature_set`` on (part of) the training split only, and transform both splits.

    Parameters
    ----------
    ds : Dataset
        Images (n, H, W, C) ``uint8`` in ``X_train`` and ``X_test``.
    feature_set : FeatureSet
    seed : int
        Given to transformers that take a ``random_state`` (k-means).
    log : callable, optional
    fit_rows : array of int, optional
        Positions in ``ds.X_train`` to fit on (the study's selection split
        keeps its validation rows out); default all of them.
    order : array of int, optional
        Positions in ``ds.X_train`` in the order the feature rows (and their
        labels) take; default as they are.  The study lays its selection's
        subsets out as row slices this way, so that they are views of the
        feature matrix.

    Returns
    -------
    features : Dataset
        The same labels and classes, ``X_train``/``X_test`` float32 rows,
        ``name`` ``"<data set> [<features>]"``.
    transformer : the fitted transformer
    seconds : dict
        ``fit_transform_train`` (fitting, then transforming every training
        image) and ``transform_test`` wall times.

    Raises
    ------
    ValueError or ImgclsError
        What the transformer raises for these images (too small, not
        ``uint8``, an ONNX model that does not take them ...).
    """
    from sklearn.base import clone

    log = log or (lambda msg: None)
    X_train = np.asarray(ds.X_train)
    if X_train.ndim not in (3, 4):
        raise ConfigError(f"features {feature_set.name!r}: {ds.name} holds feature vectors of "
                          f"shape {X_train.shape[1:]}, not images; --features needs images")
    transformer = _seed(clone(feature_set.transformer), seed)
    X_fit = X_train if fit_rows is None else X_train[np.asarray(fit_rows)]
    log(f"features {feature_set.name}: fitting on {len(X_fit)} of the {len(X_train)} training "
        f"images, then transforming all of them")
    t0 = time.perf_counter()
    # fit on training rows only; the test split is only ever transformed
    transformer.fit(X_fit)
    del X_fit
    y_train = np.asarray(ds.y_train)
    if order is not None:
        order = np.asarray(order)
        X_train, y_train = X_train[order], y_train[order]
    F_train = np.asarray(transformer.transform(X_train), dtype=np.float32)
    del X_train
    t_train = time.perf_counter() - t0
    log(f"features {feature_set.name}: transforming the {len(ds.y_test)} test images")
    t0 = time.perf_counter()
    F_test = np.asarray(transformer.transform(np.asarray(ds.X_test)), dtype=np.float32)
    t_test = time.perf_counter() - t0
    for split, F in (("training", F_train), ("test", F_test)):
        if not np.all(np.isfinite(F)):
            raise ValueError(f"features {feature_set.name!r} gave NaN or infinite values on "
                             f"the {split} split of {ds.name}")
    log(f"features {feature_set.name}: {F_train.shape[1]} features per image "
        f"({t_train:.1f} s training split, {t_test:.1f} s test split)")
    out = dataclasses.replace(ds, X_train=F_train, y_train=y_train, X_test=F_test,
                              name=f"{ds.name} [{feature_set.name}]")
    return out, transformer, {"fit_transform_train": t_train, "transform_test": t_test}
