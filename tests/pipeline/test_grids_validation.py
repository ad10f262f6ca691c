"""The study's grids and estimators go through the estimators' parameter constraints."""

import pytest
from sklearn.utils._param_validation import InvalidParameterError, StrOptions

from imgcls.errors import ConfigError
from imgcls.linear import LinearSVM
from imgcls.pipeline import grids
from imgcls.pipeline.estimators import make_estimator


def test_default_grids_are_unchanged_and_valid():
    # the MNIST / digits results depend on these exact grids
    assert grids.linear_grid("svm", 5_000) == {"learning_rate": [0.01, 0.03, 0.1],
                                               "reg": [1e-4, 1e-3, 1e-2], "epochs": [10, 20]}
    assert grids.linear_grid("softmax", 20_000) == {"learning_rate": [0.003, 0.01, 0.03],
                                                    "reg": [1e-5, 1e-4, 1e-3], "epochs": [10]}
    assert grids.clip_ks(grids.KNN_KS, 6) == [1, 3, 5]
    assert grids.clip_ks(grids.KNN_KS, 1_000) == list(grids.KNN_KS)
    assert grids.clip_ks(grids.KNN_KS, 0) == [1]


def test_default_linear_grid_is_checked_against_the_constraints(monkeypatch):
    tighter = {**LinearSVM._parameter_constraints,
               "epochs": [StrOptions({"auto"}), _interval(1, 15)]}
    monkeypatch.setattr(LinearSVM, "_parameter_constraints", tighter)
    with pytest.raises(ConfigError, match=r"^default svm grid point \d+ of 18 \(epochs=20, "
                                          r"learning_rate=.*\): The 'epochs' parameter"):
        grids.linear_grid("svm", 100)


def _interval(low, high):
    from numbers import Integral

    from imgcls._validation import Interval

    return Interval(Integral, low, high, closed="both")


def test_clip_ks_checks_every_k():
    with pytest.raises(ConfigError, match=r"ks grid point 1 of 2 \(k=0\): The 'k' parameter"):
        grids.clip_ks([0, 3], 10)
    with pytest.raises(ConfigError, match=r"\(k=2\.0\): The 'k' parameter"):
        grids.clip_ks([2.0], 10)


@pytest.mark.parametrize("name, params, parameter", [
    ("knn", {"k": 0}, "k"),
    ("knn", {"metric": "euclid"}, "metric"),
    ("svm", {"learning_rate": -1.0}, "learning_rate"),
    ("softmax", {"optimizer": "rmsprop"}, "optimizer"),
    ("softmax", {"center": "yes"}, "center"),
])
def test_make_estimator_checks_values_before_any_data_is_read(name, params, parameter):
    with pytest.raises(ConfigError, match=rf"^model '{name}': The '{parameter}' parameter of "
                                          rf"\w+ must be .* instead\.$") as info:
        make_estimator(name, params)
    assert isinstance(info.value.__cause__, InvalidParameterError)
    assert make_estimator("knn", {"k": 7}).k == 7
