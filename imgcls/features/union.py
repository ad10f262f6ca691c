"""Feature sets by name: ``make_features("hog+color")``.

A name is one registered feature set (``FEATURES``) or several joined by ``+``,
whose features are concatenated side by side (scikit-learn's ``FeatureUnion``,
in the order written).  This is the vocabulary of ``imgcls run --features``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

#: Registered feature sets: name -> (module, class).
FEATURES = {
    "pixels": ("imgcls.features.pixels", "Pixels"),
    "hog": ("imgcls.features.hog", "HOG"),
    "color": ("imgcls.features.color", "ColorHistogram"),
    "kmeans": ("imgcls.features.kmeans", "KMeansFeatures"),
}


def feature_names(spec: str) -> list[str]:
    """The registered names in ``spec`` (``"hog+color"`` -> ``["hog", "color"]``).

    Raises
    ------
    ConfigError
        An empty or unknown name, or a name given twice; the message lists the
        known names.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"a feature set is a name such as 'hog+color', got {spec!r}")
    names = [part.strip().lower() for part in spec.split("+")]
    known = ", ".join(FEATURES)
    for name in names:
        if name not in FEATURES:
            what = "an empty name" if not name else f"unknown feature set {name!r}"
            raise ConfigError(f"features {spec!r}: {what}; choose from {known}, joined with '+'")
    if len(set(names)) != len(names):
        raise ConfigError(f"features {spec!r}: a feature set is named twice")
    return names


def make_features(spec: str, params: dict[str, dict[str, Any]] | None = None):
    """The transformer for ``spec``: one feature set, or a ``FeatureUnion`` of several.

    Parameters
    ----------
    spec : str
        ``"hog"``, ``"hog+color"``, ... (names in ``FEATURES``, case-insensitive).
    params : dict, optional
        Parameters per name, e.g. ``{"kmeans": {"n_centroids": 400}}``.

    Returns
    -------
    transformer
        A single transformer for one name; otherwise
        ``sklearn.pipeline.FeatureUnion([(name, transformer), ...])``, whose
        output is the float32 features of each, side by side.

    Raises
    ------
    ConfigError
        Unknown names (see :func:`feature_names`), or ``params`` for a name not
        in ``spec``.
    """
    import importlib

    names = feature_names(spec)
    params = dict(params or {})
    extra = sorted(set(params) - set(names))
    if extra:
        raise ConfigError(f"features {spec!r}: parameters given for {extra}, which it does "
                          f"not name")
    parts = []
    for name in names:
        module, cls = FEATURES[name]
        parts.append((name, getattr(importlib.import_module(module), cls)(**params.get(name, {}))))
    if len(parts) == 1:
        return parts[0][1]
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(parts)
