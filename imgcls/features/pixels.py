"""``Pixels``: the raw pixel values as features, the lecture's baseline."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import flatten_images
from ._images import image_schema


class Pixels(TransformerMixin, BaseEstimator):
    """Every pixel value as one float32 feature (images flattened row by row).

    Takes images (n, H, W, C) or (n, H, W) of any numeric dtype, or rows that
    are already flat (n, d); returns (n, H*W*C) float32 with the pixel values
    unchanged (0..255 for ``uint8`` images).  Nothing is learned but the shape.

    Attributes
    ----------
    n_features_in_ : int
    image_shape_ : tuple of int or None
        Shape of one image seen by ``fit``, None for 2-D input.
    """

    _parameter_constraints: dict = {}
    _learned_attribute_schema = image_schema()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def fit(self, X, y=None):
        """Record the shape of the images.

        Parameters
        ----------
        X : array-like of shape (n, H, W[, C]) or (n, d)
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X2, image_shape = flatten_images(X)
        validate_data(self, X2, reset=True, dtype=[np.float32, np.float64, np.uint8])
        self.image_shape_ = image_shape
        return self

    def transform(self, X):
        """Flatten to float32 rows.

        Parameters
        ----------
        X : array-like of shape (n, H, W[, C]) or (n, d)

        Returns
        -------
        ndarray of shape (n, n_features_in_), float32
        """
        check_is_fitted(self)
        X2, _ = flatten_images(X)
        X2 = validate_data(self, X2, reset=False, dtype=[np.float32, np.float64, np.uint8])
        return np.asarray(X2, dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.asarray([f"pixel{i}" for i in range(self.n_features_in_)], dtype=object)
