"""The ASGI application of ``imgcls serve``: models loaded at start, JSON errors, safety headers.

:func:`create_app` loads every model file once (``imgcls.io.load``, with the
signing key when given), names each model after its file's stem, and builds a
FastAPI application with the JSON API (:mod:`imgcls.serve.api`), the pages
and the demos (:mod:`imgcls.serve.pages`, :mod:`imgcls.serve.demos`).

What the application guarantees, whatever a request holds:

* every refused request is a 4xx response ``{"error": {"code", "message"}}``
  with a one-line message (unknown routes and methods, FastAPI's own
  validation errors included);
* every response carries ``X-Content-Type-Options: nosniff`` and the API's
  JSON escapes ``<``, ``>`` and ``&``, so no model-supplied string (a class
  name, metadata) can be taken for HTML;
* no CORS header unless ``cors_origins`` names origins;
* Swagger UI and ReDoc are off (they load their scripts from a CDN, and the
  server must work offline); the generated OpenAPI document is at
  ``/openapi.json``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from .._version import __version__
from ..errors import ConfigError
from .limits import ApiError, ServeLimits

__all__ = ["create_app", "ServedModel", "load_served_model", "json_response", "error_response"]

log = logging.getLogger("imgcls.serve")

# Characters escaped in every JSON body: JSON stays valid (they only occur
# inside strings), and a response mistaken for HTML holds no markup.
_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

# The predict route's path, as Starlette compiles "/v1/models/{name}:predict".
_PREDICT_PATH = re.compile(r"^/v1/models/(?P<name>[^/]+):predict$")

# Short codes of the HTTP errors Starlette raises itself (routing).
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


@dataclass
class ServedModel:
    """One loaded model and what the API says about it.

    Attributes
    ----------
    name : str
        The file's stem, the ``{name}`` of the routes.
    estimator : object
        The fitted estimator ``imgcls.io.load`` returned.
    kind : {"knn", "linear"}
    classes : list of str
        The saved class names, else ``str`` of each entry of ``classes_``.
    image_shape : tuple (H, W, C) or None
        None for a model of feature vectors.
    n_features : int
    metadata : dict
        The model file's metadata document (:func:`imgcls.io.read_metadata`).
    path : Path
    """

    name: str
    estimator: Any
    kind: str
    classes: list
    image_shape: tuple | None
    n_features: int
    metadata: dict
    path: Path
    # one kNN query at a time per model: lazily built search caches are not
    # shared between threads, and the search itself already uses every core
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _templates: list | None = field(default=None, repr=False)
    _weights: tuple | None = field(default=None, repr=False)

    def describe(self) -> dict:
        """The model's entry in ``GET /v1/models``."""
        return {"name": self.name, "estimator": type(self.estimator).__name__,
                "kind": self.kind, "classes": self.classes,
                "input": {"image_shape": list(self.image_shape) if self.image_shape else None,
                          "n_features": self.n_features},
                "metadata": self.metadata}


def load_served_model(path: str | os.PathLike, key: bytes | str | None = None) -> ServedModel:
    """Load one model file for serving.

    Raises
    ------
    ModelFileError
        The file cannot be loaded (see :func:`imgcls.io.load`).
    ConfigError
        The estimator is neither a kNN nor a linear classifier.
    """
    from ..io import load, read_metadata

    path = Path(path)
    est = load(path, key=key)
    if hasattr(est, "kneighbors") and hasattr(est, "X_fit_"):
        kind = "knn"
    elif hasattr(est, "W_") and hasattr(est, "class_scores"):
        kind = "linear"
    else:
        raise ConfigError(f"{path}: a {type(est).__name__} cannot be served; imgcls serve "
                          "serves kNN and linear classifiers")
    metadata = read_metadata(path)
    names = getattr(est, "class_names_", None)
    classes = [str(c) for c in (names if names is not None else est.classes_)]
    shape = getattr(est, "image_shape_", None)
    return ServedModel(name=path.stem, estimator=est, kind=kind, classes=classes,
                       image_shape=tuple(int(s) for s in shape) if shape else None,
                       n_features=int(est.n_features_in_), metadata=metadata, path=path)


def _default(obj):
    # numpy scalars in metadata or results; anything else is a bug, not input
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_response(content: Any, status: int = 200) -> Response:
    """``content`` as compact JSON with ``<``, ``>`` and ``&`` escaped (no NaN allowed)."""
    text = json.dumps(content, separators=(",", ":"), allow_nan=False, default=_default)
    return Response(text.translate(_ESCAPES), status_code=status,
                    media_type="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    """The one error shape: ``{"error": {"code": code, "message": one line}}``."""
    return json_response({"error": {"code": code, "message": " ".join(str(message).split())}},
                         status)


class _PredictFastPath:
    """Pure ASGI middleware sending ``POST /v1/models/{name}:predict`` straight to its handler.

    The handler (:func:`imgcls.serve.api.predict`) is the one the FastAPI route
    declares (and documents); calling it here skips FastAPI's routing and
    dependency resolution, which cost as much as decoding and classifying a
    28 x 28 image.  Its :class:`ApiError` becomes the same JSON error as through
    the route; anything else propagates to the application's error handling.
    It sits inside the CORS and header middleware, so responses are the same.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            m = _PREDICT_PATH.match(scope["path"])
            if m is not None:
                from starlette.requests import Request

                from .api import predict

                try:
                    response = await predict(Request(scope, receive), m.group(1))
                except ApiError as exc:
                    response = error_response(exc.status, exc.code, exc.message)
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class _SafetyHeaders:
    """Pure ASGI middleware adding ``X-Content-Type-Options: nosniff`` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-content-type-options", b"nosniff")]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else \
            first.get("msg", "invalid request")
        return error_response(422, "bad_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        message = f"no route {request.url.path[:200]!r}" if exc.status_code == 404 else detail
        response = error_response(exc.status_code, code, message)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        # a bug, never a bad request: logged with its traceback, answered in the same shape
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error ({type(exc).__name__})")


def create_app(model_paths: Sequence[str | os.PathLike], *, key: bytes | str | None = None,
               limits: ServeLimits | None = None, cors_origins: Iterable[str] = ()) -> FastAPI:
    """The application serving ``model_paths``.

    Parameters
    ----------
    model_paths : sequence of path-like
        Model files written by :func:`imgcls.save`; each is loaded now, and
        its stem names it in the API.
    key : bytes or str, optional
        Demand a valid signature under this key from every file.
    limits : ServeLimits, optional
        Per-request limits; the defaults of :class:`ServeLimits` when None.
    cors_origins : iterable of str
        Origins allowed to call the API from a browser; none by default (no
        CORS headers at all).

    Returns
    -------
    fastapi.FastAPI
        With ``app.state.models`` (name -> :class:`ServedModel`) and
        ``app.state.limits``.

    Raises
    ------
    ModelFileError
        A file cannot be loaded.
    ConfigError
        No model file, two files with the same stem, or a model that cannot be served.
    """
    from . import api, demos, pages

    paths = [Path(p) for p in model_paths]
    if not paths:
        raise ConfigError("no model file given; imgcls serve needs at least one")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise ConfigError(f"two model files are named {p.stem!r} ({stems[p.stem]} and {p}); "
                              "models are named after their file's stem, so rename one")
        stems[p.stem] = p
    limits = ServeLimits() if limits is None else limits
    if not isinstance(limits, ServeLimits):
        raise ValueError(f"limits must be a ServeLimits, got {type(limits).__name__}")
    origins = [str(o) for o in cors_origins]
    models = {p.stem: load_served_model(p, key) for p in paths}
    for served in models.values():
        # one prediction now, so that the first request does not pay for compiled
        # kernels, lazily built caches and first-touch page faults
        api.predict_batch(served, np.zeros((1, *(served.image_shape or (served.n_features,))),
                                           np.uint8), 1, False, limits)

    app = FastAPI(title="imgcls", version=__version__,
                  description="Image classification with imgcls models: the JSON API of "
                              "`imgcls serve`. Every error is `{\"error\": {\"code\", "
                              "\"message\"}}` with a 4xx status.",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.models = models
    app.state.limits = limits
    _install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(demos.router)
    app.add_middleware(_PredictFastPath)  # innermost: inside CORS and the headers
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["content-type"])
    app.add_middleware(_SafetyHeaders)
    return app
