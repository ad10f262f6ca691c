"""The JSON API of ``imgcls serve``: health, the models, predictions, templates.

Routes (every error is a 4xx ``{"error": {"code", "message"}}``):

* ``GET /healthz`` -> ``{"status": "ok"}``
* ``GET /v1/models`` -> ``{"models": [ServedModel.describe(), ...]}``
* ``POST /v1/models/{name}:predict`` -- images as ``multipart/form-data``
  (one or more parts named ``file``), or JSON ``{"instances": [pixel arrays],
  "top_k": 5, "thumbnails": false}``; ``top_k`` and ``thumbnails`` may also be
  query parameters (the body's values win).  Files are decoded from memory by
  :func:`imgcls.datasets._decode.decode_bytes`, the rules the ``folder:``
  loader and ``imgcls predict`` apply (converted to the model's channels,
  resized to its H x W).  A pixel array is (H, W), (H, W, C) or flat, values
  0..255.
* ``GET /v1/models/{name}/templates`` -> the rows of a linear model's ``W_``
  as PNG images (each stretched over its own min..max).

The body is read within :attr:`ServeLimits.max_body_bytes` before it is
parsed; the handler then decodes, predicts (a kNN search runs in a worker
thread, so the server keeps answering meanwhile; a linear model's one matrix
product runs inline) and answers with ``time_ms.handler`` (from the start of
the handler to the response's content, JSON encoding excluded) and
``time_ms.model`` (the prediction alone).
"""

from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..errors import ImageError
from .app import ServedModel, json_response
from .encode import png_data_url
from .limits import ApiError, ServeLimits, read_body

__all__ = ["router", "predict_batch", "parse_json_instances", "parse_multipart"]

router = APIRouter()

#: Default number of classes listed per image.
DEFAULT_TOP_K = 5

# Form fields besides the files that a multipart request may carry.
_FORM_OPTIONS = ("top_k", "thumbnails")
_JSON_KEYS = frozenset({"instances", *_FORM_OPTIONS})


# ------------------------------------------------------------------ docs models
class ErrorBody(BaseModel):
    code: str = Field(description="short machine-readable cause, e.g. bad_image, too_large")
    message: str = Field(description="one line naming the cause")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelInput(BaseModel):
    image_shape: Optional[list[int]] = Field(description="[H, W, C], or null for feature vectors")
    n_features: int


class ModelInfo(BaseModel):
    name: str
    estimator: str
    kind: str = Field(description="knn or linear")
    classes: list[str]
    input: ModelInput
    metadata: dict


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class TopClass(BaseModel):
    class_: str = Field(alias="class")
    index: int = Field(description="index into the model's classes")
    score: float = Field(description="probability (softmax), vote share (kNN) or margin (SVM)")


class Neighbor(BaseModel):
    index: int = Field(description="row of the training set")
    class_: str = Field(alias="class")
    distance: float
    thumbnail: Optional[str] = Field(None, description="data:image/png;base64 URL, on request")


class Prediction(BaseModel):
    top: list[TopClass]
    neighbors: Optional[list[Neighbor]] = Field(None, description="kNN models only")


class Timing(BaseModel):
    handler: float
    model: float


class PredictResponse(BaseModel):
    model: str
    score: str = Field(description="what the scores are: probability, vote_share or score")
    predictions: list[Prediction]
    time_ms: Timing


class Template(BaseModel):
    class_: str = Field(alias="class")
    png: str


class TemplatesResponse(BaseModel):
    templates: list[Template]


_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 409, 413, 415, 422)}

_PREDICT_BODY = {
    "parameters": [
        {"name": "top_k", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_TOP_K},
         "description": "classes listed per image (the body's top_k wins)"},
        {"name": "thumbnails", "in": "query", "required": False,
         "schema": {"type": "boolean", "default": False},
         "description": "kNN models: PNG thumbnails of the neighbours"},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "properties": {"file": {"type": "array",
                                        "items": {"type": "string", "format": "binary"}},
                               "top_k": {"type": "integer"},
                               "thumbnails": {"type": "boolean"}},
                "required": ["file"]}},
            "application/json": {"schema": {
                "type": "object",
                "properties": {"instances": {"type": "array", "items": {
                    "type": "array", "description": "pixels 0..255: (H, W), (H, W, C) or flat"}},
                    "top_k": {"type": "integer", "default": DEFAULT_TOP_K},
                    "thumbnails": {"type": "boolean", "default": False}},
                "required": ["instances"]}},
        },
    }
}


# ----------------------------------------------------------------------- routes
@router.get("/healthz", summary="liveness", tags=["api"])
async def healthz():
    return json_response({"status": "ok"})


@router.get("/v1/models", summary="the models served", tags=["api"],
            responses={200: {"model": ModelsResponse}})
async def list_models(request: Request):
    return json_response({"models": [m.describe() for m in request.app.state.models.values()]})


@router.post("/v1/models/{name}:predict", summary="classify images", tags=["api"],
             openapi_extra=_PREDICT_BODY,
             responses={200: {"model": PredictResponse}, **_ERRORS})
async def predict(request: Request, name: str):
    # top_k and thumbnails are read from the query here (documented in _PREDICT_BODY):
    # declared as FastAPI parameters they would cost a validation pass per request
    start = time.perf_counter()
    model = _model(request, name)
    limits: ServeLimits = request.app.state.limits
    query = request.query_params
    top_k = _form_option("top_k", query["top_k"]) if "top_k" in query else None
    thumbnails = _form_option("thumbnails", query["thumbnails"]) if "thumbnails" in query \
        else None
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media not in ("multipart/form-data", "application/json"):
        raise ApiError(415, "unsupported_media_type",
                       f"send multipart/form-data (field 'file') or application/json, "
                       f"not {media[:80] or 'no Content-Type'!r}")
    body = await read_body(request, limits.max_body_bytes)
    if media == "application/json":
        X, options = parse_json_instances(body, model, limits)
    else:
        X, options = parse_multipart(body, ctype, model, limits)
    k = _top_k(options.get("top_k", top_k), limits)
    thumbs = _flag(options.get("thumbnails", thumbnails))
    if model.kind == "knn":
        # one search at a time per model, off the event loop
        def run():
            with model.lock:
                return predict_batch(model, X, k, thumbs, limits)
        predictions, model_s = await run_in_threadpool(run)
    else:
        predictions, model_s = predict_batch(model, X, k, thumbs, limits)
    score = "vote_share" if model.kind == "knn" else (
        "probability" if hasattr(model.estimator, "predict_proba") else "score")
    handler_ms = (time.perf_counter() - start) * 1e3
    return json_response({"model": model.name, "score": score, "predictions": predictions,
                          "time_ms": {"handler": handler_ms, "model": model_s * 1e3}})


@router.get("/v1/models/{name}/templates", summary="a linear model's class templates",
            tags=["api"], responses={200: {"model": TemplatesResponse}, **_ERRORS})
async def templates(request: Request, name: str):
    model = _model(request, name)
    if model.kind != "linear":
        raise ApiError(409, "no_templates", f"model {name!r} is a {model.kind} model; only "
                                            "linear models have class templates")
    if model.image_shape is None:
        raise ApiError(409, "no_templates", f"model {name!r} was trained on feature vectors, "
                                            "not images; its weights are not images")
    if model._templates is None:
        T = np.asarray(model.estimator.templates_)
        model._templates = [{"class": c, "png": png_data_url(t, stretch=True)}
                            for c, t in zip(model.classes, T)]
    return json_response({"templates": model._templates})


def _model(request: Request, name: str) -> ServedModel:
    models = request.app.state.models
    try:
        return models[name]
    except KeyError:
        known = ", ".join(sorted(models)[:20])
        raise ApiError(404, "unknown_model", f"no model named {name[:100]!r}; "
                                             f"served: {known}") from None


def _top_k(value, limits: ServeLimits) -> int:
    if value is None:
        return DEFAULT_TOP_K
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.max_top_k:
        raise ApiError(422, "bad_request", f"top_k must be an integer in 1..{limits.max_top_k}, "
                                           f"got {json.dumps(value)[:40]}")
    return value


def _flag(value) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(422, "bad_request", f"thumbnails must be true or false, "
                                           f"got {json.dumps(value)[:40]}")
    return value


def _form_option(name: str, text: str):
    """A query parameter or multipart text field as the JSON value it stands for."""
    text = text.strip()
    if name == "top_k" and text.isascii() and text.isdigit() and len(text) <= 9:
        return int(text)
    if name == "thumbnails" and text.lower() in ("true", "false", "1", "0"):
        return text.lower() in ("true", "1")
    raise ApiError(422, "bad_request", f"form field {name} must be "
                                       f"{'an integer' if name == 'top_k' else 'true or false'}, "
                                       f"got {text[:40]!r}")


# --------------------------------------------------------------------- parsing
def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_json_instances(body: bytes, model: ServedModel, limits: ServeLimits):
    """A JSON body -> (model input (n, ...) array, options dict).

    The number count is bounded on the raw bytes (one more than the commas,
    an upper bound) before parsing; NaN/Infinity literals are refused.
    """
    if body.count(b",") + 1 > limits.max_json_numbers:
        raise ApiError(413, "too_large", f"JSON body holds more than the limit of "
                                         f"{limits.max_json_numbers} numbers")
    try:
        doc = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise ApiError(400, "bad_json", "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        raise ApiError(400, "bad_json", f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiError(422, "bad_request", 'the JSON body must be an object {"instances": [...]}')
    unknown = sorted(set(doc) - _JSON_KEYS)
    if unknown:
        raise ApiError(422, "bad_request", f"unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
                                           f"expected {', '.join(sorted(_JSON_KEYS))}")
    instances = doc.get("instances")
    if not isinstance(instances, list) or not instances:
        raise ApiError(422, "bad_request", "instances must be a non-empty list of pixel arrays")
    if len(instances) > limits.max_images:
        raise ApiError(413, "too_many_images", f"{len(instances)} instances; at most "
                                               f"{limits.max_images} per request")
    check_bools = b"true" in body or b"false" in body
    rows = [_instance(v, i, model, check_bools) for i, v in enumerate(instances)]
    options = {k: doc[k] for k in _FORM_OPTIONS if k in doc}
    return _stack(rows), options


def _has_bool(value) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool):
            return True
        if isinstance(v, list):
            stack.extend(v)
    return False


def _instance(value, i: int, model: ServedModel, check_bools: bool) -> np.ndarray:
    """One JSON pixel array -> a model input row (uint8 when all integral, else float32)."""
    where = f"instances[{i}]"
    if not isinstance(value, list):
        raise ApiError(422, "wrong_shape", f"{where} must be an array of pixels, "
                                           f"got {type(value).__name__}")
    try:
        arr = np.array(value)
    except (ValueError, TypeError):  # ragged
        raise ApiError(422, "wrong_shape", f"{where} is not a rectangular array "
                                           "(rows of different lengths)") from None
    if arr.dtype.kind not in "iuf" or (check_bools and _has_bool(value)):
        what = {"b": "true/false", "U": "strings", "O": "null, objects or nested arrays"}.get(
            arr.dtype.kind, arr.dtype.name)
        if arr.dtype.kind in "iuf":
            what = "true/false"
        raise ApiError(422, "bad_pixels", f"{where} holds {what}; pixels must be numbers")
    arr = _reshape(arr, where, model)
    if not np.isfinite(arr).all():
        raise ApiError(422, "bad_pixels", f"{where} holds a non-finite number")
    if model.image_shape is None:
        return arr.astype(np.float32, copy=False) if arr.dtype.kind == "f" else arr
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi > 255:
        raise ApiError(422, "bad_pixels", f"{where}: pixel values must be in 0..255, found "
                                          f"{lo if lo < 0 else hi}")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.rint(arr)):
        return arr.astype(np.float32)
    return arr.astype(np.uint8)


def _reshape(arr: np.ndarray, where: str, model: ServedModel) -> np.ndarray:
    shape = model.image_shape
    if shape is None:
        if arr.shape == (model.n_features,):
            return arr
        raise ApiError(422, "wrong_shape", f"{where} has shape {list(arr.shape)}; this model "
                                           f"takes feature vectors of {model.n_features} numbers")
    H, W, C = shape
    if arr.shape == shape or arr.shape == (H * W * C,) or (C == 1 and arr.shape == (H, W)):
        return arr.reshape(shape)
    accepted = f"[{H}, {W}, {C}]" + (f", [{H}, {W}]" if C == 1 else "") + f" or [{H * W * C}]"
    hint = ""
    if arr.ndim == 3 and arr.shape[:2] == (H, W):
        hint = f" ({arr.shape[2]} channels, the model takes {C})"
    raise ApiError(422, "wrong_shape", f"{where} has shape {list(arr.shape)}{hint}; "
                                       f"this model takes {accepted}")


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    if any(r.dtype != rows[0].dtype for r in rows):
        rows = [r.astype(np.float32) for r in rows]
    return np.stack(rows)




def parse_multipart(body: bytes, content_type: str, model: ServedModel, limits: ServeLimits):
    """A multipart/form-data body -> (model input (n, H, W, C) uint8, options dict).

    Parsed in memory (python-multipart's streaming parser over the bytes
    already read): parts named ``file`` are images, ``top_k`` and
    ``thumbnails`` options; any other part is refused.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary")
    parts: list[dict] = []
    state = {"part": None, "field": [], "value": [], "ended": False}
    max_parts = limits.max_images + len(_FORM_OPTIONS)

    def on_part_begin():
        if len(parts) >= max_parts:
            raise ApiError(413, "too_many_images", f"more than {limits.max_images} files in one "
                                                   "request")
        state["part"] = {"headers": {}, "data": []}

    def on_header_field(data, start, end):
        state["field"].append(data[start:end])

    def on_header_value(data, start, end):
        state["value"].append(data[start:end])

    def on_header_end():
        name = b"".join(state["field"]).strip().lower()
        state["part"]["headers"][name] = b"".join(state["value"]).strip()
        state["field"], state["value"] = [], []

    def on_part_data(data, start, end):
        state["part"]["data"].append(data[start:end])

    def on_part_end():
        parts.append(state["part"])
        state["part"] = None

    def on_end():
        state["ended"] = True

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_part_data": on_part_data, "on_part_end": on_part_end, "on_end": on_end}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001  python-multipart's parse errors (ValueError kin)
        raise ApiError(400, "bad_request", f"malformed multipart body: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''}"
                       ) from None
    if not state["ended"]:
        raise ApiError(400, "bad_request", "malformed multipart body: it ends before its "
                                           "closing boundary (truncated?)")
    files, options = [], {}
    for part in parts:
        disposition = part["headers"].get(b"content-disposition", b"")
        _, disp = parse_options_header(disposition)
        field_name = disp.get(b"name", b"").decode("latin-1")
        data = b"".join(part["data"])
        if field_name == "file":
            filename = disp.get(b"filename", b"").decode("utf-8", "replace")
            files.append((filename, data))
        elif field_name in _FORM_OPTIONS:
            options[field_name] = _form_option(field_name, data[:40].decode("latin-1"))
        else:
            raise ApiError(422, "bad_request", f"unexpected form field {field_name[:40]!r}; "
                                               "send images under 'file'")
    if not files:
        raise ApiError(422, "bad_request", "no image: send one or more files under the form "
                                           "field 'file'")
    if len(files) > limits.max_images:
        raise ApiError(413, "too_many_images", f"{len(files)} files; at most "
                                               f"{limits.max_images} per request")
    return np.stack([_decode(i, fn, data, model, limits) for i, (fn, data) in
                     enumerate(files)]), options


def _decode(i: int, filename: str, data: bytes, model: ServedModel,
            limits: ServeLimits) -> np.ndarray:
    from ..datasets._decode import decode_bytes

    label = f"file {i}" + (f" ({filename[:80]!r})" if filename else "")
    if model.image_shape is None:
        raise ApiError(409, "not_an_image_model", f"model {model.name!r} was trained on "
                                                  "feature vectors; send JSON instances")
    H, W, C = model.image_shape
    if C not in (1, 3):
        raise ApiError(422, "wrong_channels", f"{label}: the model takes {C} channels; only 1 "
                                              "(grey) or 3 (RGB) can be made from an image file")
    if not data:
        raise ApiError(422, "bad_image", f"{label}: empty file")
    try:
        return decode_bytes(data, "L" if C == 1 else "RGB", (H, W), limits.max_pixels, label)
    except ImageError as exc:
        # over the pixel limit (ours, or Pillow's decompression-bomb limit): too large
        status = 413 if ("max_pixels" in str(exc) or "decompression-bomb" in str(exc)) else 422
        raise ApiError(status, "too_large" if status == 413 else "bad_image", str(exc)) from None


# ------------------------------------------------------------------ prediction
def predict_batch(model: ServedModel, X: np.ndarray, top_k: int, thumbnails: bool,
                  limits: ServeLimits) -> tuple[list[dict], float]:
    """Predictions for the rows of ``X``, and the seconds the model took.

    Linear models rank classes by their scores ``W x' + b`` (ties to the
    smaller index, as :func:`imgcls.pipeline.rank_labels`) and report
    ``predict_proba`` (softmax) or the scores (SVM); kNN models rank and score
    by the vote of one search (the order of ``predict_topk``) and list the
    neighbours.
    """
    est = model.estimator
    k = min(top_k, len(model.classes))
    t0 = time.perf_counter()
    if model.kind == "knn":
        from ..neighbors.vote import vote_rank, vote_scores

        dist, ind = est.kneighbors(X)
        neigh_y = np.asarray(est.y_fit_)[ind]
        votes = vote_scores(neigh_y, dist, len(est.classes_), est.weights, est.temperature,
                            est.metric)
        scores = votes / votes.sum(axis=1, keepdims=True)
        order = vote_rank(votes, neigh_y)[:, :k]
    else:
        raw = linear_scores(model, X)
        order = np.argsort(-raw, axis=1, kind="stable")[:, :k]
        scores = _probabilities(est, raw)
    model_s = time.perf_counter() - t0
    classes = model.classes
    out = []
    for r in range(len(X)):
        row = scores[r]
        pred = {"top": [{"class": classes[c], "index": int(c), "score": float(row[c])}
                        for c in order[r].tolist()]}
        if model.kind == "knn":
            pred["neighbors"] = _neighbors(model, ind[r], dist[r], neigh_y[r], thumbnails,
                                           limits)
        out.append(pred)
    return out, model_s


def linear_scores(model: ServedModel, X: np.ndarray) -> np.ndarray:
    """``est.class_scores(X)`` for rows the API has already checked, bit for bit.

    The same preprocessing (:func:`imgcls.linear.preprocess.transform`, float64)
    and product as :meth:`~imgcls.linear.base.LinearClassifierBase.class_scores`,
    without scikit-learn's input validation: the request parsers have already
    checked shape, dtype and values, and that validation is most of the cost of
    one image.  The float64 weights are converted once per model.
    """
    from ..linear.preprocess import transform

    est = model.estimator
    if model._weights is None:
        model._weights = (np.asarray(est.W_, dtype=np.float64),
                          np.asarray(est.b_, dtype=np.float64))
    W, b = model._weights
    Xp = transform(X.reshape(len(X), -1), est.input_scale_, est.mean_, est.scale_,
                   dtype=np.float64)
    out = np.matmul(Xp, W.T)  # W.T as class_scores takes it: the same BLAS call
    out += b
    return out


def _probabilities(est, raw: np.ndarray) -> np.ndarray:
    from ..linear import Softmax
    from ..linear.losses import softmax_proba

    if isinstance(est, Softmax):
        return softmax_proba(raw)  # predict_proba without a second matrix product
    return raw


def _neighbors(model: ServedModel, ind, dist, neigh_y, thumbnails: bool,
               limits: ServeLimits) -> list[dict]:
    n = min(len(ind), limits.max_neighbors)
    est = model.estimator
    out = []
    for j in range(n):
        i = int(ind[j])
        entry = {"index": i, "class": model.classes[int(neigh_y[j])], "distance": float(dist[j])}
        if thumbnails and model.image_shape is not None:
            entry["thumbnail"] = png_data_url(np.asarray(est.X_fit_[i]).reshape(model.image_shape))
        out.append(entry)
    return out
