"""``OnnxEmbedder``: any ONNX image model as a feature extractor (bring your own weights).

The model runs through onnxruntime, an optional extra (``pip install
imgcls[onnx]``) imported only when an embedder is fitted or used.  No weights
are downloaded or bundled: ``model_path`` is a file the user already has.

How each image becomes model input, in this order:

1. resized to ``input_size`` (H, W) with Pillow's bilinear filter, as the one
   decoding path (:mod:`imgcls.datasets._decode`) resizes image files; images
   already of that size are left as they are;
2. a greyscale image is repeated on three channels when the model takes three;
3. scaled to [0, 1], then ``(x - mean) / std`` per channel (ImageNet's
   statistics by default), channels in ``channel_order`` ("rgb" or "bgr");
4. laid out as ``layout`` ("nchw", most exported CNNs, or "nhwc"), float32.

The output named ``output_name`` (the first output by default) is flattened
to one float32 row per image.

How a fitted embedder refers to its model
-----------------------------------------
The learned state is the SHA-256 of the model file's bytes (``model_sha256_``)
and the output width (``n_features_out_``); the bytes themselves are never
copied into an imgcls model file.  A saved pipeline therefore holds the path
(a parameter) and the hash: whenever the embedder opens the file (the first
``transform`` after loading, and :meth:`OnnxEmbedder.check_model_file`, which
:func:`imgcls.io.load` calls) it hashes the bytes it read and refuses a file
whose SHA-256 differs, so a replaced or damaged ONNX file is an error, never
different features.  Move the ONNX file with the model file and keep the path
valid (``set_params(model_path=...)`` changes it; the hash still has to match).
"""

from __future__ import annotations

import hashlib
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from .._files import open_regular
from .._progress import track
from .._validation import Int, Interval, _Invalid, _Spec
from ..errors import ConfigError, FormatError
from ._images import check_images, check_same_shape, image_schema

__all__ = ["OnnxEmbedder", "MAX_ONNX_BYTES"]

#: Largest ONNX file read: protobuf's own limit on one serialised message (2 GiB).
MAX_ONNX_BYTES = 2**31 - 1
_INSTALL = "pip install imgcls[onnx]"
# Read size when hashing a file before trusting it (bounded memory).
_HASH_BLOCK = 1 << 20


class _Sha256(_Spec):
    """A SHA-256 digest as 64 lowercase hex digits."""

    def __init__(self, *, optional=False):
        self.optional = optional

    def check(self, value, dims):
        if not (isinstance(value, str) and len(value) == 64
                and all(c in "0123456789abcdef" for c in value)):
            raise _Invalid("must be a SHA-256 digest (64 lowercase hex digits)")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"OnnxEmbedder needs onnxruntime, which is not installed: "
                          f"{_INSTALL}") from None
    return onnxruntime


def _pair(value, name):
    if isinstance(value, (Integral, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}") \
            from None
    if any(isinstance(v, bool) or not isinstance(v, (Integral, np.integer)) or v < 1
           for v in (h, w)):
        raise ValueError(f"{name} must hold positive ints, got {value!r}")
    return int(h), int(w)


def _per_channel(value, name, channels):
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be one finite number or {channels} of them (one per "
                         f"channel the model takes), got {value!r}")
    return arr


class OnnxEmbedder(TransformerMixin, BaseEstimator):
    """Features from an ONNX image model run by onnxruntime.

    Parameters
    ----------
    model_path : str
        The ``.onnx`` file (a regular file; nothing is downloaded).
    input_size : int or (int, int), default (224, 224)
        The model's (height, width); images are resized to it (bilinear).
    mean, std : sequence of float, default ImageNet's
        Per-channel normalisation of pixels scaled to [0, 1], in the order of
        ``channel_order``; one number applies to every channel.
    channel_order : {"rgb", "bgr"}, default "rgb"
    layout : {"nchw", "nhwc"}, default "nchw"
    output_name : str or None, default None
        The output to use (e.g. a penultimate layer exported as an output);
        None takes the model's first output.
    batch_size : int, default 64
        Images per onnxruntime call.

    Attributes
    ----------
    model_sha256_ : str
        SHA-256 of the model file's bytes at ``fit``; checked whenever the file
        is opened again.
    n_features_out_ : int
        Width of the flattened output per image.
    n_features_in_ : int
    image_shape_ : tuple of int
        Shape of one image seen by ``fit``.

    Raises
    ------
    ConfigError
        onnxruntime is not installed (the message says ``pip install imgcls[onnx]``).
    FormatError
        The file is not an ONNX model onnxruntime can load, its SHA-256 changed
        since ``fit``, or its output holds NaN or infinity (the model is named).
    ValueError
        The model's input shape does not match ``input_size``/``layout``/the
        channels (both shapes named), or bad parameters.
    """

    _parameter_constraints = {
        "model_path": [str],
        "input_size": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "mean": [tuple, list, Real],
        "std": [tuple, list, Real],
        "channel_order": [StrOptions({"rgb", "bgr"})],
        "layout": [StrOptions({"nchw", "nhwc"})],
        "output_name": [str, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }
    _learned_attribute_schema = image_schema(
        dims={"n_out": 1},
        model_sha256_=_Sha256(),
        n_features_out_=Int(dim="n_out", min=1),
    )

    def __init__(self, model_path, input_size=(224, 224), mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), channel_order="rgb", layout="nchw",
                 output_name=None, batch_size=64):
        self.model_path = model_path
        self.input_size = input_size
        self.mean = mean
        self.std = std
        self.channel_order = channel_order
        self.layout = layout
        self.output_name = output_name
        self.batch_size = batch_size

    # ------------------------------------------------------------------ model file
    def _read_model(self, expect_sha256: str | None) -> tuple[bytes, str]:
        """The file's bytes and SHA-256; with ``expect_sha256`` the file is hashed in
        blocks first, so a path naming some other large file costs no memory."""
        with open_regular(self.model_path, error=FormatError, what="ONNX model file") as f:
            if expect_sha256 is not None:
                h = hashlib.sha256()
                for block in iter(lambda: f.read(_HASH_BLOCK), b""):
                    h.update(block)
                self._check_digest(h.hexdigest(), expect_sha256)
                f.seek(0)
            data = f.read(MAX_ONNX_BYTES + 1)
        if len(data) > MAX_ONNX_BYTES:
            raise FormatError(f"{self.model_path}: larger than {MAX_ONNX_BYTES} bytes, more "
                              "than one ONNX (protobuf) message can hold")
        digest = hashlib.sha256(data).hexdigest()
        if expect_sha256 is not None:  # the bytes used, not only the bytes hashed above
            self._check_digest(digest, expect_sha256)
        return data, digest

    def _check_digest(self, digest: str, expect: str) -> None:
        if digest != expect:
            raise FormatError(f"{self.model_path}: this ONNX file is not the one the embedder "
                              f"was fitted with (SHA-256 {digest[:16]}..., expected "
                              f"{expect[:16]}...)")

    def _open(self, expect_sha256: str | None):
        """((session, input name, output name, channels), SHA-256) for the file, hash checked."""
        ort = _onnxruntime()
        data, digest = self._read_model(expect_sha256)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: warnings would reach the user's stderr
        try:
            session = ort.InferenceSession(data, sess_options=opts,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for bad graphs
            raise FormatError(f"{self.model_path}: not an ONNX model onnxruntime can run "
                              f"({' '.join(str(exc).split())[:300]})") from None
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{self.model_path}: OnnxEmbedder needs a model with one image "
                             f"input, this one has {len(inputs)}: "
                             f"{[i.name for i in inputs][:10]}")
        outputs = [o.name for o in session.get_outputs()]
        out_name = outputs[0] if self.output_name is None else self.output_name
        if out_name not in outputs:
            raise ValueError(f"output_name {self.output_name!r} is not an output of "
                             f"{self.model_path}; its outputs are {outputs[:20]}")
        channels = self._check_input_shape(inputs[0])
        return (session, inputs[0].name, out_name, channels), digest

    def _check_input_shape(self, inp) -> int:
        """The channel count the model takes; its fixed dimensions must match ours."""
        h, w = _pair(self.input_size, "input_size")
        shape = list(inp.shape)
        chan_axis = 1 if self.layout == "nchw" else 3
        fixed = [d if isinstance(d, (int, np.integer)) and d > 0 else None for d in shape]
        channels = fixed[chan_axis] if len(shape) == 4 else None
        channels = 3 if channels is None else int(channels)
        want = [None, channels, h, w] if self.layout == "nchw" else [None, h, w, channels]
        given = ["N", channels, h, w] if self.layout == "nchw" else ["N", h, w, channels]
        if len(shape) != 4 or any(f is not None and e is not None and f != e
                                  for f, e in zip(fixed, want)) or channels not in (1, 3):
            shown = [d if d is not None else "?" for d in fixed]
            raise ValueError(f"{self.model_path}: the model's input {inp.name!r} has shape "
                             f"{shown}, but OnnxEmbedder gives {given} (input_size={(h, w)}, "
                             f"layout={self.layout!r}, 1 or 3 channels); set input_size and "
                             f"layout to the model's")
        if "float" not in str(inp.type):
            raise ValueError(f"{self.model_path}: the model's input {inp.name!r} is "
                             f"{inp.type}; OnnxEmbedder feeds float32 images")
        return channels

    def check_model_file(self) -> None:
        """Open the model file and check it is the one fitted (SHA-256); see the module doc."""
        check_is_fitted(self)
        self._state, _ = self._open(self.model_sha256_)

    # ------------------------------------------------------------------ images -> input
    def _prepare(self, X: np.ndarray, channels: int) -> np.ndarray:
        from PIL import Image

        h, w = _pair(self.input_size, "input_size")
        if X.shape[1:3] != (h, w):
            resample = Image.Resampling.BILINEAR
            X = np.stack([np.asarray(Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
                                     .resize((w, h), resample)).reshape(h, w, -1)
                          for img in X])
        if X.shape[3] == 1 and channels == 3:
            X = np.repeat(X, 3, axis=3)
        if X.shape[3] != channels:
            raise ValueError(f"{self.model_path}: the model takes {channels} channel(s), the "
                             f"images have {X.shape[3]}")
        mean = _per_channel(self.mean, "mean", channels).astype(np.float32)
        std = _per_channel(self.std, "std", channels).astype(np.float32)
        if np.any(std == 0):
            raise ValueError(f"std must not be 0, got {self.std!r}")
        x = X.astype(np.float32) / np.float32(255.0)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        x = (x - mean) / std
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _embed(self, X: np.ndarray, state) -> np.ndarray:
        session, in_name, out_name, channels = state
        bs = int(self.batch_size)
        starts = range(0, len(X), bs)
        rows = []
        for s in track(starts, "ONNX embeddings", total=len(starts)):
            batch = self._prepare(X[s:s + bs], channels)
            try:
                (out,) = session.run([out_name], {in_name: batch})
            except Exception as exc:
                raise ValueError(f"{self.model_path}: onnxruntime refused input of shape "
                                 f"{list(batch.shape)} "
                                 f"({' '.join(str(exc).split())[:300]})") from None
            out = np.asarray(out)
            if out.ndim == 0 or out.shape[0] != len(batch):
                raise FormatError(f"{self.model_path}: output {out_name!r} has shape "
                                  f"{list(out.shape)}, not one row per image of the batch "
                                  f"of {len(batch)}")
            out = out.reshape(len(batch), -1)
            if out.dtype.kind not in "fiu":
                raise FormatError(f"{self.model_path}: output {out_name!r} is {out.dtype}, "
                                  "not numbers")
            out = out.astype(np.float32)
            if not np.all(np.isfinite(out)):
                bad = s + int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
                raise FormatError(f"{self.model_path}: the ONNX model returned NaN or infinite "
                                  f"features (first at image {bad}); refusing to use them")
            rows.append(out)
        return np.concatenate(rows)

    # ------------------------------------------------------------------ estimator API
    def _check(self, X):
        X = check_images(X, name="OnnxEmbedder")
        _pair(self.input_size, "input_size")
        return X

    def fit(self, X, y=None):
        """Open the model, check it takes these images, and record its output width.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, C) or (n, H, W), uint8
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._check(X)
        state, digest = self._open(None)
        out = self._embed(X[:1], state)
        self._state = state
        self.model_sha256_ = digest
        self.n_features_out_ = int(out.shape[1])
        self.image_shape_ = tuple(int(s) for s in X.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))
        return self

    def transform(self, X):
        """Embed images.

        Parameters
        ----------
        X : ndarray of shape (n, H, W, C) or (n, H, W), uint8

        Returns
        -------
        ndarray of shape (n, n_features_out_), float32
        """
        check_is_fitted(self)
        X = self._check(X)
        check_same_shape(X, self.image_shape_, "OnnxEmbedder")
        state = getattr(self, "_state", None)
        if state is None:
            self.check_model_file()
            state = self._state
        out = self._embed(X, state)
        if out.shape[1] != self.n_features_out_:
            raise FormatError(f"{self.model_path}: the model returned {out.shape[1]} features "
                              f"per image; it returned {self.n_features_out_} at fit")
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_state", None)  # an onnxruntime session is not copyable
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
