"""The three model names of a study and how to build their estimators.

``"knn"`` -> :class:`imgcls.neighbors.KNearestNeighbor`, ``"svm"`` ->
:class:`imgcls.linear.LinearSVM`, ``"softmax"`` -> :class:`imgcls.linear.Softmax`.
Unknown names and unknown parameters are :class:`~imgcls.errors.ConfigError`
listing what is valid; parameter *values* are checked at once by the
estimator's own ``_parameter_constraints`` (the check ``fit`` makes), so a bad
value fails before any data is read.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..errors import ConfigError

__all__ = ["MODEL_NAMES", "parse_models", "estimator_class", "make_estimator"]

#: The models a study compares, in report order.
MODEL_NAMES = ("knn", "svm", "softmax")


def parse_models(models: str | Iterable[str]) -> tuple[str, ...]:
    """``"knn,svm"`` or ``["knn", "svm"]`` -> ``("knn", "svm")`` (validated, no repeats)."""
    if isinstance(models, str):
        names = [m.strip().lower() for m in models.split(",") if m.strip()]
    else:
        try:
            names = [str(m).strip().lower() for m in models]
        except TypeError:
            raise ConfigError(f"models must be names from {list(MODEL_NAMES)}, got {models!r}") \
                from None
    if not names:
        raise ConfigError(f"no model given; choose from {', '.join(MODEL_NAMES)}")
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:
        raise ConfigError(f"unknown model name(s) {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(MODEL_NAMES)}")
    return tuple(dict.fromkeys(names))


def estimator_class(name: str):
    """The estimator class of a model name."""
    if name == "knn":
        from ..neighbors import KNearestNeighbor

        return KNearestNeighbor
    if name in ("svm", "softmax"):
        from .. import linear

        return linear.LinearSVM if name == "svm" else linear.Softmax
    raise ConfigError(f"unknown model name {name!r}; choose from {', '.join(MODEL_NAMES)}")


def make_estimator(name: str, params: dict[str, Any] | None = None):
    """A new estimator for ``name`` with ``params`` set.

    Raises
    ------
    ConfigError
        An unknown model name, a parameter the estimator does not have
        (the message lists the valid ones), or a value its
        ``_parameter_constraints`` refuse (scikit-learn's one-line message,
        naming the parameter and what is allowed; the
        ``InvalidParameterError`` is chained as the cause).
    """
    from sklearn.utils._param_validation import InvalidParameterError

    est = estimator_class(name)()
    params = dict(params or {})
    valid = est.get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} for model {name!r}; "
                          f"valid: {', '.join(sorted(valid))}")
    est.set_params(**params)
    try:
        est._validate_params()
    except InvalidParameterError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from exc
    return est
