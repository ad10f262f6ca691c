"""Both estimators pass scikit-learn's estimator checks and work in Pipeline/GridSearchCV."""

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from imgcls.linear import LinearSVM, Softmax


@parametrize_with_checks([LinearSVM(random_state=0), Softmax(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_grid_search_and_pipeline():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 1, (60, 5)), rng.normal(2, 1, (60, 5))])
    y = np.repeat(["a", "b"], 60)
    pipe = make_pipeline(FunctionTransformer(), Softmax(random_state=0))
    gs = GridSearchCV(pipe, {"softmax__reg": [1e-4, 1e-1]}, cv=3).fit(X, y)
    assert gs.best_score_ > 0.95
    gs = GridSearchCV(LinearSVM(random_state=0), {"learning_rate": [1e-3, 1e-2]}, cv=3).fit(X, y)
    assert gs.best_estimator_.predict(X[:3]).tolist() == ["a", "a", "a"]
