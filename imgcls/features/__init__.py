"""Image features for the classifiers: scikit-learn transformers, images in, float32 rows out.

* :class:`Pixels` -- the raw pixels, the lecture's baseline;
* :class:`HOG` -- histograms of oriented gradients (Dalal and Triggs), equal to
  scikit-image's ``hog`` on the same settings;
* :class:`ColorHistogram` -- the course's hue histogram in HSV;
* :class:`KMeansFeatures` -- single-layer k-means features (Coates, Lee and Ng, 2011);
* :func:`make_features` -- feature sets by name, side by side (``"hog+color"``);
* :class:`OnnxEmbedder` -- any ONNX image model, through onnxruntime (``imgcls[onnx]``).

Each takes ``uint8`` images (n, H, W, C) or (n, H, W) and returns float32
features in memory-bounded batches.
"""

from __future__ import annotations

from .color import ColorHistogram
from .hog import HOG
from .kmeans import KMeansFeatures
from .onnx import OnnxEmbedder
from .pixels import Pixels
from .union import FEATURES, feature_names, make_features

__all__ = ["Pixels", "HOG", "ColorHistogram", "KMeansFeatures", "OnnxEmbedder",
           "make_features", "feature_names", "FEATURES"]
