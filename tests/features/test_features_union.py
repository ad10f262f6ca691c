"""Feature sets by name, and the transformers in scikit-learn pipelines."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline

from imgcls.errors import ConfigError
from imgcls.features import (FEATURES, HOG, ColorHistogram, KMeansFeatures, Pixels,
                             feature_names, make_features)


def _images(n=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def test_names_build_their_transformers():
    assert list(FEATURES) == ["pixels", "hog", "color", "kmeans"]
    kinds = {"pixels": Pixels, "hog": HOG, "color": ColorHistogram, "kmeans": KMeansFeatures}
    for name, cls in kinds.items():
        assert type(make_features(name)) is cls
    assert feature_names(" HOG + color ") == ["hog", "color"]


def test_union_concatenates_in_order():
    X = _images()
    u = make_features("hog+color")
    assert isinstance(u, FeatureUnion)
    F = u.fit_transform(X)
    assert F.dtype == np.float32
    np.testing.assert_array_equal(F, np.hstack([HOG().fit_transform(X),
                                                ColorHistogram().fit_transform(X)]))
    u = make_features("color+kmeans", {"kmeans": {"n_centroids": 4, "n_patches": 200,
                                                  "max_iter": 2, "random_state": 0}})
    assert u.fit_transform(X).shape == (12, 10 + 4 * 4)


@pytest.mark.parametrize("spec,match", [
    ("hog+sift", "unknown feature set 'sift'; choose from pixels, hog, color, kmeans"),
    ("hog+", "an empty name"),
    ("hog+hog", "named twice"),
    (3, "a feature set is a name"),
])
def test_unknown_names(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_features(spec)


def test_params_for_a_name_not_in_the_spec():
    with pytest.raises(ConfigError, match=r"parameters given for \['kmeans'\]"):
        make_features("hog", {"kmeans": {"n_centroids": 3}})


def test_in_a_pipeline():
    X = _images(40)
    y = np.arange(40) % 2
    pipe = make_pipeline(make_features("hog+color"), LogisticRegression(max_iter=200))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (40,)


def test_pixels_flattens_to_float32():
    X = _images(3)
    F = Pixels().fit_transform(X)
    assert F.dtype == np.float32 and F.shape == (3, 768)
    np.testing.assert_array_equal(F, X.reshape(3, -1))
    with pytest.raises(ValueError, match="768 features"):
        Pixels().fit(X).transform(X[:, :8])
