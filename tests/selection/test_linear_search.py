"""Grid / random search of the linear models on a validation split."""

import numpy as np
import pytest
from scipy.stats import loguniform

import imgcls
from imgcls.errors import ConfigError, TrainingDivergedError
from imgcls.linear import LinearSVM, Softmax
from imgcls.selection import linear_search, train_val_split


@pytest.fixture(scope="module")
def digits():
    ds = imgcls.load_dataset("digits")
    return ds.X_train, ds.y_train


GRID = {"learning_rate": [0.003, 0.1], "reg": [1e-4, 1e-2], "epochs": [4]}


@pytest.mark.parametrize("cls", [LinearSVM, Softmax])
def test_grid_search_table_and_best(digits, cls):
    X, y = digits
    template = cls()
    table, best = linear_search(template, X, y, GRID, seed=0)
    assert len(table) == 4 and template.get_params() == cls().get_params()  # left unchanged
    assert [(r["learning_rate"], r["reg"]) for r in table] == [
        (0.003, 1e-4), (0.003, 1e-2), (0.1, 1e-4), (0.1, 1e-2)]
    for row in table:
        assert not row["diverged"] and 0 < row["val_acc"] <= 1 and row["epochs_run"] == 4
        assert row["params"] == {"epochs": 4, "learning_rate": row["learning_rate"],
                                 "reg": row["reg"]}
    top = max(r["val_acc"] for r in table)
    assert best == next(r["params"] for r in table if r["val_acc"] == top)
    # each row's score is what fitting that configuration on the same split gives
    X_tr, X_val, y_tr, y_val = train_val_split(X, y, 0.2, 0)
    row = table[2]
    model = cls(random_state=0, **row["params"]).fit(X_tr, y_tr)
    assert model.score(X_val, y_val) == pytest.approx(row["val_acc"])


def test_explicit_validation_set_and_seed(digits):
    X, y = digits
    X_tr, X_val, y_tr, y_val = train_val_split(X, y, 0.25, 3)
    grid = {"learning_rate": [0.05], "reg": [1e-4], "epochs": [3]}
    a, _ = linear_search(Softmax(), X_tr, y_tr, grid, X_val=X_val, y_val=y_val, seed=1)
    b, _ = linear_search(Softmax(), X_tr, y_tr, grid, X_val=X_val, y_val=y_val, seed=1)
    assert a[0]["val_acc"] == b[0]["val_acc"]
    expected = Softmax(random_state=1, **a[0]["params"]).fit(X_tr, y_tr).score(X_val, y_val)
    assert a[0]["val_acc"] == pytest.approx(expected)


def test_random_search(digits):
    X, y = digits
    dists = {"learning_rate": loguniform(1e-3, 1e-1), "reg": [1e-4, 1e-3], "epochs": [3]}
    table, best = linear_search(LinearSVM(), X, y, param_distributions=dists, n_iter=3, seed=0)
    again, _ = linear_search(LinearSVM(), X, y, param_distributions=dists, n_iter=3, seed=0)
    assert len(table) == 3 and [r["learning_rate"] for r in table] == \
        [r["learning_rate"] for r in again]
    assert all(1e-3 <= r["learning_rate"] <= 1e-1 for r in table)
    assert best in [r["params"] for r in table]


def test_diverged_configuration_is_recorded(digits, monkeypatch):
    X, y = digits
    real_fit = Softmax.fit

    def fit(self, *a, **kw):
        if self.learning_rate > 1:
            raise TrainingDivergedError("loss became inf at epoch 1")
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(Softmax, "fit", fit)
    table, best = linear_search(Softmax(), X, y, {"learning_rate": [0.05, 10.0], "epochs": [2]})
    assert [r["diverged"] for r in table] == [False, True]
    assert table[1]["val_acc"] is None and "inf" in table[1]["error"]
    assert best["learning_rate"] == 0.05
    with pytest.raises(ConfigError, match="every configuration of Softmax diverged"):
        linear_search(Softmax(), X, y, {"learning_rate": [10.0], "epochs": [2]})


@pytest.mark.parametrize("kwargs, match", [
    (dict(param_grid={"reg": [1e-4, -1e-3]}),
     r"^grid point 2 of 2 \(reg=-0\.001\): The 'reg' parameter of Softmax must be a float in "
     r"the range \[0\.0, inf\)\. Got -0\.001 instead\.$"),
    (dict(param_grid={"learning_rate": [0.1, 0.0], "epochs": [2]}),
     r"^grid point 2 of 2 \(epochs=2, learning_rate=0\.0\): The 'learning_rate' parameter"),
    (dict(param_grid={"epochs": [0]}), r"\(epochs=0\): The 'epochs' parameter .* an int in "),
    (dict(param_grid={"epochs": [True]}), r"\(epochs=True\): The 'epochs' parameter"),
    (dict(param_grid={"reg": [float("nan")]}), r"\(reg=nan\): The 'reg' parameter"),
    (dict(param_grid={"momentum": [1.0]}), r"\(momentum=1\.0\): The 'momentum' parameter"),
    (dict(param_grid={"optimizer": ["rmsprop"]}), r"The 'optimizer' parameter of Softmax must "
                                                  r"be a str among"),
    (dict(param_grid={"scale": [0]}), r"The 'scale' parameter"),
    (dict(param_distributions={"reg": loguniform(1e-4, 1e-1), "epochs": [2, -1]}, n_iter=6),
     r"grid point \d of 6 \(epochs=-1, reg=0\.\d+\): The 'epochs' parameter"),
    (dict(param_grid={"kernel": ["rbf"]}), r"unknown parameter\(s\) \['kernel'\]"),
    (dict(param_grid={"reg": []}), "grid is empty|invalid parameter grid"),
    (dict(param_grid={}), "grid is empty"),
    (dict(), "exactly one of param_grid and param_distributions"),
    (dict(param_grid={"reg": [1e-4]}, n_iter=3), "n_iter applies to a random search"),
    (dict(param_distributions={"reg": [1e-4]}), "needs n_iter >= 1"),
    (dict(param_grid={"reg": [1e-4]}, X_val=np.zeros((2, 8, 8, 1))), "both X_val and y_val"),
    (dict(param_grid={"reg": [1e-4]}, val_size=1.5), "val_size must be a fraction"),
])
def test_bad_input(digits, kwargs, match):
    """Grid points are judged by the estimator's _parameter_constraints, before any fit."""
    X, y = digits
    template = Softmax()
    with pytest.raises(ConfigError, match=match):
        linear_search(template, X, y, **kwargs)
    assert template.get_params() == Softmax().get_params()


def test_every_grid_point_is_checked_before_any_fit(digits, monkeypatch):
    X, y = digits

    def no_fit(self, *args, **kwargs):
        raise AssertionError("a configuration was fitted before the grid was checked")

    monkeypatch.setattr(Softmax, "fit", no_fit)
    with pytest.raises(ConfigError, match=r"grid point 4 of 4 \(learning_rate=-1\.0, reg=0\.0\)"):
        linear_search(Softmax(), X, y, {"learning_rate": [0.1, 0.3, 1.0, -1.0], "reg": [0.0]})
    # the template's own values are checked too (they are part of every point)
    with pytest.raises(ConfigError, match=r"grid point 1 of 1 \(reg=0\.0\): The 'momentum'"):
        linear_search(Softmax(momentum=2.0), X, y, {"reg": [0.0]})
