"""Input checks shared by the estimators, and the schema of their learned attributes.

Three things live here, one owner each:

* :func:`flatten_images`, how every estimator turns images into rows;
* the parameter vocabulary: estimators declare scikit-learn's
  ``_parameter_constraints`` (with :class:`Interval` from here, which refuses
  ``bool``), ``fit`` calls ``self._validate_params()``, and searches check
  every grid point up front with :func:`check_grid_points`;
* the small vocabulary an estimator class uses to declare what its fitted
  state looks like (``_learned_attribute_schema``), and the ONE checker of an
  attribute dict against it, :func:`validate_learned_attributes`.  Model files
  (:func:`imgcls.io.load`) call that checker before any attribute is set, so a
  crafted file cannot leave a model that fails later with an ``IndexError``,
  ``MemoryError`` or a ufunc traceback.

A schema names the dimensions symbolically; the first attribute that has a
dimension binds it, every later one must agree::

    Schema(
        dims={"n_samples": 1, "n_features": 1, "n_classes": 1},   # name: minimum
        attributes={
            "X_fit_": Array(("n_samples", "n_features"), dtypes=("uint8", "float64"),
                            finite=True),
            "classes_": Array(("n_classes",), kinds="iuU", sorted_unique=True),
            "y_fit_": Array(("n_samples",), dtypes=("int64",), below="n_classes"),
            "n_features_in_": Int(dim="n_features"),
            "image_shape_": ImageShape("n_features"),
        })

Attributes are checked in the order they are declared, so an attribute whose
values refer to a dimension (``below="n_classes"``) comes after one that binds
it.  Every violation is a ``ValueError("<attribute>: <cause>")``, one line.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from sklearn.utils._param_validation import Interval as _SklearnInterval
from sklearn.utils._param_validation import InvalidParameterError

from .errors import ConfigError

__all__ = ["flatten_images", "Interval", "check_grid_points", "validate_learned_attributes",
           "Schema", "Array", "Int", "Float", "ImageShape", "Names", "Records",
           "CLASSIFIER_ATTRIBUTES", "first_nonfinite_row", "FINITE_BLOCK_BYTES",
           "check_n_neighbors"]


def check_n_neighbors(n_neighbors, default: int) -> int:
    """``kneighbors``'s ``n_neighbors`` (``default``, the estimator's k, when None) as an int.

    Raises
    ------
    ValueError
        Not an integer >= 1 (booleans included), as scikit-learn's ``kneighbors`` says.
    """
    k = default if n_neighbors is None else n_neighbors
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"n_neighbors must be an integer >= 1, got {k!r}")
    return int(k)


def flatten_images(X):
    """Flatten images of shape (n, H, W, C) or (n, H, W) to (n, H*W*C), without a copy.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)

    Returns
    -------
    X2 : ndarray or the input unchanged
        ``X`` reshaped to (n_samples, n_features) when it had more than two
        dimensions (a view where the memory layout allows); other inputs are
        returned as they are, for scikit-learn's validation to judge.
    image_shape : tuple of int or None
        The shape of one sample, e.g. (28, 28, 1), when ``X`` had more than two
        dimensions; otherwise None.
    """
    if isinstance(X, np.ndarray) and X.ndim > 2:
        return X.reshape(X.shape[0], -1), tuple(int(s) for s in X.shape[1:])
    return X, None


# ------------------------------------------------------------------- parameters

class Interval(_SklearnInterval):
    """scikit-learn's ``Interval`` constraint, except that ``bool`` is refused.

    ``True`` is an ``int`` to Python, but never a meaningful count, size, rate
    or seed for an imgcls parameter; ``k=True`` is a mistake to report.
    Everything else (bounds, ``closed``, the one-line message of
    ``InvalidParameterError``) is scikit-learn's.  Use ``np.inf`` as the right
    bound with ``closed="neither"``/``"left"`` to refuse infinity.
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def _format_point(params: Mapping[str, Any]) -> str:
    """``a=1, b='x'``: numpy scalars (from scipy.stats draws) shown as plain numbers."""
    return ", ".join(f"{k}={_short(v.item() if isinstance(v, np.generic) else v)}"
                     for k, v in sorted(params.items()))


def check_grid_points(estimator, points: Iterable[Mapping[str, Any]], *,
                      where: str = "grid") -> None:
    """Validate every parameter set of a search before anything is fitted.

    Each point is checked the way ``fit`` would check it: a clone of
    ``estimator`` with the point's parameters set, then the estimator's own
    ``_validate_params()`` (its ``_parameter_constraints``).  An estimator
    without ``_parameter_constraints`` (a third-party one) is not checked here;
    its ``fit`` judges its parameters.

    Parameters
    ----------
    estimator : estimator
        The template; it is not modified.
    points : iterable of dict
        Parameter name -> value, one dict per grid point.  Names must be
        parameters of ``estimator`` (callers report unknown names first).
    where : str
        What the points are, for the message (e.g. ``"grid"``, ``"kNN grid"``).

    Raises
    ------
    ConfigError
        ``"<where> point i of n (name=value, ...): <scikit-learn's message>"``
        for the first point a constraint refuses; the message names the
        parameter and what is allowed.  The ``InvalidParameterError`` is chained
        as the cause.
    """
    from sklearn.base import clone

    if getattr(estimator, "_parameter_constraints", None) is None:
        return
    points = list(points)
    for i, params in enumerate(points):
        model = clone(estimator)
        try:
            model.set_params(**params)
            model._validate_params()
        except InvalidParameterError as exc:
            raise ConfigError(f"{where} point {i + 1} of {len(points)} "
                              f"({_format_point(params)}): {exc}") from exc


# ------------------------------------------------------------ learned attributes

#: Most axes of one sample's shape: numpy 1.x arrays have at most 32 axes
#: (NPY_MAXDIMS), and ``templates_`` adds the class axis in front.
MAX_IMAGE_AXES = 31
#: Bytes of a float array checked at a time for NaN/inf (4 MiB): the check
#: holds one integer buffer of this size, never a copy or boolean mask of a
#: whole (possibly memory-mapped) training set.
FINITE_BLOCK_BYTES = 1 << 22
#: IEEE 754 binary16/32/64 by item size: the unsigned view, the mask that drops
#: the sign bit, and the smallest masked value with every exponent bit set
#: (infinity; anything above it is NaN).  Comparing integers is several times
#: faster than ``np.isfinite`` on float32 and ~10x on float16, which numpy
#: converts to float32 first.
_NONFINITE_BITS = {2: (np.uint16, 0x7FFF, 0x7C00),
                   4: (np.uint32, 0x7FFF_FFFF, 0x7F80_0000),
                   8: (np.uint64, 0x7FFF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000)}


class _Invalid(Exception):
    """A cause, raised inside a spec; the checker prefixes the attribute name."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Dims:
    """The symbolic dimensions bound so far, with the attribute that bound each."""

    def __init__(self, minimums: Mapping[str, int]):
        self.minimums = minimums
        self.bound: dict[str, tuple[int, str]] = {}
        self.current = ""  # the attribute being checked

    def size(self, dim: str) -> int:
        return self.bound[dim][0]

    def bind(self, dim: str, size: int, what: str) -> None:
        """Bind ``dim`` to ``size``, or check that it agrees with the earlier binding."""
        if dim in self.bound:
            bound, source = self.bound[dim]
            if bound != size:
                raise _Invalid(f"{what} is {size}, but {dim} = {bound} (from {source})")
            return
        if size < self.minimums[dim]:
            raise _Invalid(f"{what} is {size}; {dim} must be >= {self.minimums[dim]}")
        self.bound[dim] = (size, self.current)


class _Spec:
    """Base of the attribute kinds; ``optional`` attributes may be absent."""

    optional = False

    def check(self, value: Any, dims: _Dims) -> None:
        raise NotImplementedError


class Array(_Spec):
    """A numpy array.

    Parameters
    ----------
    shape : tuple of str
        One dimension name per axis (the array's ndim is ``len(shape)``).
    dtypes : tuple of str, optional
        Allowed dtype names (e.g. ``("float64",)``).
    kinds : str, optional
        Allowed dtype kinds instead (numpy's letters: ``"b"`` bool, ``"i"``/``"u"``
        integers, ``"f"`` floats, ``"U"``/``"S"`` strings, ``"O"`` objects).
    finite : bool
        Float values (float16 too) must not be NaN or infinite; checked in
        blocks (:func:`first_nonfinite_row`), so a memory-mapped array is not
        copied.
    positive : bool
        Every value must be > 0.
    below : str, optional
        Integer values must lie in ``[0, <below>)``, a bound dimension.
    sorted_unique : bool
        Strictly increasing along the one axis (what ``np.unique`` gives).
    objects : tuple of type
        For object arrays: the allowed element types (no nested containers).
    optional : bool
    """

    def __init__(self, shape, *, dtypes=None, kinds=None, finite=False, positive=False,
                 below=None, sorted_unique=False, objects=(str, numbers.Real),
                 optional=False):
        self.shape = tuple(shape)
        self.dtypes = None if dtypes is None else tuple(dtypes)
        self.kinds = kinds
        self.finite = finite
        self.positive = positive
        self.below = below
        self.sorted_unique = sorted_unique
        self.objects = objects
        self.optional = optional

    def check(self, value, dims):
        if not isinstance(value, np.ndarray):
            raise _Invalid(f"must be a numpy array, got {type(value).__name__}")
        dt = value.dtype
        if self.dtypes is not None and dt.name not in self.dtypes:
            raise _Invalid(f"dtype {dt.name} is not allowed; expected one of "
                           f"{', '.join(self.dtypes)}")
        if self.kinds is not None and (dt.kind not in self.kinds or dt.fields is not None):
            raise _Invalid(f"dtype {dt} is not allowed; expected kind {self.kinds!r}")
        if value.ndim != len(self.shape):
            raise _Invalid(f"must have {len(self.shape)} axes {self.shape}, got shape "
                           f"{value.shape}")
        for axis, (dim, size) in enumerate(zip(self.shape, value.shape)):
            dims.bind(dim, int(size), f"axis {axis} ({dim})")
        if dt.kind == "O":
            for item in value.reshape(-1):
                if isinstance(item, bool) or not isinstance(item, self.objects):
                    raise _Invalid(f"holds a {type(item).__name__}; an object array here "
                                   f"may hold only " + ", ".join(t.__name__ for t in self.objects))
        if self.finite and dt.kind in "fc":
            row = first_nonfinite_row(value)
            if row is not None:
                raise _Invalid(f"holds NaN or infinite values (first in row {row})")
        if self.positive and value.size and not bool(np.all(value > 0)):
            raise _Invalid("holds values <= 0; every value must be > 0")
        if self.below is not None and value.size:
            bound = dims.size(self.below)
            low, high = value.min(), value.max()
            if low < 0 or high >= bound:
                raise _Invalid(f"values must lie in [0, {bound}) ({self.below}), got "
                               f"{low}..{high}")
        if self.sorted_unique and value.size > 1 and not _strictly_increasing(value):
            raise _Invalid("must be sorted and without repeats (as numpy.unique returns)")


def first_nonfinite_row(a, *, block_bytes: int = FINITE_BLOCK_BYTES) -> int | None:
    """The first index along axis 0 whose values hold NaN or an infinity, or None.

    Reads ``a`` once, in blocks of whole rows of about ``block_bytes``, so a
    memory-mapped array is scanned without being copied into memory (float16
    values too large for float16 are stored as infinity, so an overflow shows
    up here too).

    Parameters
    ----------
    a : ndarray or array-like with ``shape``, ``dtype`` and row slicing
        (e.g. :class:`imgcls.datasets.features.ShardedArray`).  Arrays of
        non-float dtypes have no such values: the answer is None at once.
    block_bytes : int
        Bytes examined at a time; the temporary buffer is at most this large
        (or one row, when a row is larger).

    Returns
    -------
    int or None
        The row index (0 for a 0-d array), or None when every value is finite.
    """
    if a.dtype.kind not in "fc":
        return None
    if a.ndim == 0:
        return None if np.isfinite(a) else 0
    n = a.shape[0]
    row_items = max(1, int(np.prod(a.shape[1:], dtype=np.int64)))
    rows = max(1, block_bytes // (row_items * a.dtype.itemsize))
    bits = _NONFINITE_BITS.get(a.dtype.itemsize) if a.dtype.kind == "f" \
        and a.dtype.isnative else None
    buf = None
    for start in range(0, n, rows):
        block = np.ascontiguousarray(a[start:start + rows])  # a view when it already is
        if bits is None:
            bad_rows = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad_rows.any():
                return start + int(np.argmax(bad_rows))
            continue
        utype, mask, inf = bits
        u = block.reshape(-1).view(utype)
        if buf is None or buf.size < u.size:
            buf = np.empty(u.size, dtype=utype)
        masked = np.bitwise_and(u, utype(mask), out=buf[:u.size])
        if u.size and masked.max() >= inf:
            bad_rows = (masked.reshape(len(block), -1) >= inf).any(axis=1)
            return start + int(np.argmax(bad_rows))
    return None


def _strictly_increasing(a: np.ndarray) -> bool:
    if a.dtype.kind != "O":
        return bool(np.all(a[1:] > a[:-1]))
    items = a.tolist()
    try:
        return all(x < y for x, y in zip(items, items[1:]))
    except TypeError:  # e.g. str next to int: not sortable, so not what np.unique gives
        return False


class Int(_Spec):
    """An integer (Python or numpy, not bool), at least ``min``; ``dim`` binds it."""

    def __init__(self, *, min=0, dim=None, optional=False):
        self.min = min
        self.dim = dim
        self.optional = optional

    def check(self, value, dims):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise _Invalid(f"must be an integer, got {type(value).__name__} {_short(value)}")
        if value < self.min:
            raise _Invalid(f"must be >= {self.min}, got {value}")
        if self.dim is not None:
            dims.bind(self.dim, int(value), "the value")


class Float(_Spec):
    """A finite real number (int or float, not bool) in ``[min, max]``.

    ``positive`` demands > 0; ``none`` also allows None.
    """

    def __init__(self, *, min=None, max=None, positive=False, none=False, optional=False):
        self.min = min
        self.max = max
        self.positive = positive
        self.none = none
        self.optional = optional

    def check(self, value, dims):
        if value is None and self.none:
            return
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise _Invalid(f"must be a number{' or None' if self.none else ''}, got "
                           f"{type(value).__name__} {_short(value)}")
        try:
            finite = np.isfinite(float(value))
        except OverflowError:  # an int beyond float range
            finite = False
        if not finite:
            raise _Invalid(f"must be finite, got {value}")
        if self.positive and not value > 0:
            raise _Invalid(f"must be > 0, got {value}")
        if (self.min is not None and value < self.min) or \
                (self.max is not None and value > self.max):
            raise _Invalid(f"must lie in [{self.min}, {self.max}], got {value}")


class ImageShape(_Spec):
    """None, or a tuple of positive ints (one sample's shape) whose product is ``dim``."""

    def __init__(self, dim, *, optional=False):
        self.dim = dim
        self.optional = optional

    def check(self, value, dims):
        if value is None:
            return
        if not isinstance(value, tuple):
            raise _Invalid(f"must be None or a tuple of ints, got {type(value).__name__}")
        if not 1 <= len(value) <= MAX_IMAGE_AXES:
            raise _Invalid(f"must have 1 to {MAX_IMAGE_AXES} axes, got {len(value)}")
        product = 1
        for s in value:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
                raise _Invalid(f"every axis must be a positive int, got {_short(s)}")
            product *= int(s)  # Python ints: a crafted shape cannot overflow
        dims.bind(self.dim, product, f"the product of {_short(value)}")


class Names(_Spec):
    """A list of str whose length is ``dim`` (e.g. one name per class)."""

    def __init__(self, dim, *, optional=False):
        self.dim = dim
        self.optional = optional

    def check(self, value, dims):
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise _Invalid(f"must be a list of str, got {type(value).__name__}")
        dims.bind(self.dim, len(value), "its length")


class Records(_Spec):
    """A list of dicts with exactly the keys of ``fields``; its length binds ``length``."""

    def __init__(self, fields: Mapping[str, _Spec], *, length=None, optional=False):
        self.fields = dict(fields)
        self.length = length
        self.optional = optional

    def check(self, value, dims):
        if not isinstance(value, list):
            raise _Invalid(f"must be a list of dicts, got {type(value).__name__}")
        keys = set(self.fields)
        for i, rec in enumerate(value):
            if not isinstance(rec, dict) or set(rec) != keys:
                got = sorted(map(str, rec)) if isinstance(rec, dict) else type(rec).__name__
                raise _Invalid(f"entry {i} must be a dict with keys {sorted(keys)}, got {got}")
            for key, spec in self.fields.items():
                try:
                    spec.check(rec[key], dims)
                except _Invalid as exc:
                    raise _Invalid(f"entry {i}, {key!r}: {exc}") from None
        if self.length is not None:
            dims.bind(self.length, len(value), "its length")


#: A rule the attribute kinds cannot state: ``rule(attrs, dims, params)`` returns
#: None, or ``(attribute, cause)``.  ``dims`` maps each bound dimension to its size;
#: ``params`` is the estimator's ``get_params()``, or None when not known.
Rule = Callable[[Mapping[str, Any], Mapping[str, int], "Mapping[str, Any] | None"],
                "tuple[str, str] | None"]


class Schema:
    """The learned attributes of one estimator class.

    Parameters
    ----------
    dims : dict of str -> int
        Every dimension name used, with its smallest allowed size.
    attributes : dict of str -> spec
        Attribute name -> :class:`Array`, :class:`Int`, :class:`Float`,
        :class:`ImageShape`, :class:`Names` or :class:`Records`, in check order.
    rules : sequence of Rule
        Checks across attributes and parameters that the specs cannot state.
    """

    def __init__(self, dims: Mapping[str, int], attributes: Mapping[str, _Spec],
                 rules=()):
        self.dims = dict(dims)
        self.attributes = dict(attributes)
        self.rules = tuple(rules)

    def extend(self, attributes: Mapping[str, _Spec] = (), dims: Mapping[str, int] = (),
               rules=()) -> "Schema":
        """A new schema with more (or replaced) attributes, dimensions and rules."""
        return Schema({**self.dims, **dict(dims)}, {**self.attributes, **dict(attributes)},
                      self.rules + tuple(rules))


#: The attributes every imgcls classifier has (scikit-learn's conventions plus
#: ``image_shape_``), for the estimators' schemas to start from: ``classes_``
#: (the labels, as ``np.unique`` returns them), ``n_features_in_``,
#: ``image_shape_``, and two optional ones: ``feature_names_in_`` (scikit-learn
#: sets it when fitted on a DataFrame with string column names) and
#: ``class_names_`` (readable names, set by :func:`imgcls.io.load`).
CLASSIFIER_ATTRIBUTES: dict[str, _Spec] = {
    "classes_": Array(("n_classes",), kinds="biufUSO", sorted_unique=True),
    "n_features_in_": Int(dim="n_features"),
    "image_shape_": ImageShape("n_features"),
    "feature_names_in_": Array(("n_features",), kinds="OU", objects=(str,), optional=True),
    "class_names_": Names("n_classes", optional=True),
}


def validate_learned_attributes(estimator_cls: type, attrs: Mapping[str, Any], *,
                                params: Mapping[str, Any] | None = None) -> None:
    """Check learned attributes against ``estimator_cls._learned_attribute_schema``.

    Parameters
    ----------
    estimator_cls : type
        An estimator class.  A class without ``_learned_attribute_schema`` (a
        plug-in registered by a user) is not checked.
    attrs : mapping of str -> value
        The learned attributes as they would be set on the estimator (names
        ending in ``"_"``), e.g. decoded from a model file.
    params : mapping, optional
        The estimator's ``get_params()``, for the schema's rules that relate
        attributes to parameters (e.g. kNN's ``k`` <= number of training rows).

    Raises
    ------
    ValueError
        ``"<attribute>: <cause>"`` for the first violation: a required attribute
        is missing, a name is not in the schema (a read-only property such as
        ``templates_``, or junk), a type, dtype or number of axes is not allowed,
        sizes disagree with each other, or values are out of range.
    """
    schema = getattr(estimator_cls, "_learned_attribute_schema", None)
    if schema is None:
        return
    name = getattr(estimator_cls, "__name__", "estimator")
    if not isinstance(attrs, Mapping):
        raise ValueError(f"attributes: expected a mapping of learned attributes, got "
                         f"{type(attrs).__name__}")
    for key in attrs:
        if key not in schema.attributes:
            label = key if isinstance(key, str) and key.isidentifier() else _short(key)
            raise ValueError(f"{str(label)[:80]}: not a learned attribute of {name} (expected "
                             f"only {', '.join(schema.attributes)})")
    for key, spec in schema.attributes.items():
        if key not in attrs and not spec.optional:
            raise ValueError(f"{key}: missing; every fitted {name} has it")
    dims = _Dims(schema.dims)
    for key, spec in schema.attributes.items():
        if key not in attrs:
            continue
        dims.current = key
        try:
            spec.check(attrs[key], dims)
        except _Invalid as exc:
            raise ValueError(f"{key}: {exc}") from None
    sizes = {d: size for d, (size, _) in dims.bound.items()}
    for rule in schema.rules:
        found = rule(attrs, sizes, params)
        if found is not None:
            raise ValueError(f"{found[0]}: {found[1]}")
