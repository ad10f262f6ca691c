"""The lecture's interactive demos: kNN regions and a linear classifier in 2-D.

Both pages (``/demo/knn``, ``/demo/linear``) only draw; every number they show
is computed here, with imgcls's own code:

- ``POST /v1/demo/knn``: :class:`~imgcls.neighbors.KNearestNeighbor` finds the
  k nearest points of every grid cell and :func:`~imgcls.neighbors.vote_scores`
  counts their votes; a cell whose top vote is shared by two or more classes
  is a tie, reported as ``-1`` (drawn white).
- ``POST /v1/demo/linear``: full-batch gradient steps with the vectorised
  losses of :mod:`imgcls.linear.losses` and the plain SGD rule of
  :mod:`imgcls.linear.optim`; the SVM and softmax losses of the returned
  ``W, b`` (data loss plus ``reg * sum(W**2)``), and the argmax regions.

Grids are row-major ``ny`` x ``nx`` cell centres, row 0 at the top
(``y`` near ``ymax``) and column 0 at the left (``x`` near ``xmin``), the order
of a picture's pixels.  Every input is bounded (points, grid cells, steps,
finite numbers) and every problem is a 4xx JSON error
``{"error": {"code", "message"}}`` with a one-line message.
"""

from __future__ import annotations

import json
import math

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..linear.losses import get_loss, softmax_loss, svm_loss
from ..linear.optim import SGD
from ..neighbors import KNearestNeighbor, vote_scores
from .app import error_response

router = APIRouter()

#: Most points a demo request may hold: hundreds is what a person clicks.
MAX_POINTS = 500
#: Largest grid side; 200 x 200 cells is finer than the pages draw.
MAX_GRID_SIDE = 200
#: Largest request body; 500 points of two 20-digit numbers take ~25 KB.
MAX_BODY_BYTES = 256 * 1024
#: Most gradient steps in one request (each is a few microseconds on 500 points).
MAX_STEPS = 1000
#: kNN's K range on the page, as in the lecture's demo.
K_RANGE = (1, 7)
#: Up to 5 classes in the kNN demo; the linear demo has exactly 3.
KNN_CLASSES = 5
LINEAR_CLASSES = 3
#: Bound on every coordinate and weight, so that no product overflows float64.
MAX_ABS = 1e6
#: Points per preset data set: enough for clear regions, few enough to click.
PRESET_POINTS = 60
#: Bounds on the step size and the L2 strength.
MAX_LEARNING_RATE = 10.0
MAX_REG = 10.0


class DemoInputError(ValueError):
    """A demo request that cannot be computed; ``code`` and ``status`` go to the client."""

    def __init__(self, message, code="bad_request", status=422):
        super().__init__(message)
        self.code = code
        self.status = status


def _error(exc):
    return error_response(exc.status, exc.code, str(exc))


def _refuse_constant(name):
    raise DemoInputError(f"{name} is not a JSON number", code="bad_json", status=400)


async def _read_json(request):
    """The request body as a JSON object, read no further than :data:`MAX_BODY_BYTES`."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise DemoInputError(f"request body over {MAX_BODY_BYTES} bytes",
                                 code="too_large", status=413)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks), parse_constant=_refuse_constant)
    except DemoInputError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise DemoInputError(f"body is not valid JSON ({str(exc).splitlines()[0]})",
                             code="bad_json", status=400) from None
    if not isinstance(body, dict):
        raise DemoInputError("body must be a JSON object", code="bad_json", status=400)
    return body


def _number(body, name, lo=-MAX_ABS, hi=MAX_ABS, default=None):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DemoInputError(f"{name} must be a number, got {_kind(value)}")
    # The range first: an int too large for a float passes JSON but not math.isfinite.
    if not (lo <= value <= hi and math.isfinite(value)):
        raise DemoInputError(f"{name} must be a finite number in [{lo:g}, {hi:g}], "
                             f"got {_short(value)}")
    return float(value)


def _integer(body, name, lo, hi, default=None):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DemoInputError(f"{name} must be an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise DemoInputError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _short(value, limit=40):
    """``repr(value)``, cut to ``limit`` characters: a message quotes input, never all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(value):
    return "null" if value is None else type(value).__name__


def _matrix(value, name, shape):
    """A float64 array of ``shape`` from nested JSON lists of finite numbers within bounds."""
    def walk(v, dims, where):
        if not dims:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DemoInputError(f"{where} must be a number, got {_kind(v)}")
            return v
        if not isinstance(v, list):
            raise DemoInputError(f"{where} must be a list, got {_kind(v)}")
        if dims[0] is not None and len(v) != dims[0]:
            raise DemoInputError(f"{where} must have {dims[0]} entries, got {len(v)}")
        return [walk(x, dims[1:], f"{where}[{i}]") for i, x in enumerate(v)]

    bad = DemoInputError(f"{name} must hold finite numbers within +-{MAX_ABS:g}")
    try:
        arr = np.asarray(walk(value, shape, name), dtype=np.float64)
    except OverflowError:  # an int beyond the float range
        raise bad from None
    if arr.size and not (np.isfinite(arr).all() and np.abs(arr).max() <= MAX_ABS):
        raise bad
    return arr


def _points(body, n_classes):
    """``points`` (n, 2) float64 and ``labels`` (n,) int64 in ``0..n_classes-1``."""
    points = body.get("points")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS:
        raise DemoInputError(f"points must be a list of 1..{MAX_POINTS} [x, y] pairs")
    X = _matrix(points, "points", (None, 2))
    labels = body.get("labels")
    if not isinstance(labels, list) or len(labels) != len(points):
        raise DemoInputError(f"labels must be a list of {len(points)} integers, one per point")
    for i, c in enumerate(labels):
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n_classes:
            raise DemoInputError(f"labels[{i}] must be a class index in 0..{n_classes - 1}, "
                                 f"got {_short(c)}")
    return X, np.asarray(labels, dtype=np.int64)


def _grid(body):
    """Cell centres (ny * nx, 2) of ``body["grid"]``, row 0 at the top, and ``(nx, ny)``."""
    grid = body.get("grid")
    if not isinstance(grid, dict):
        raise DemoInputError('grid must be an object {"nx", "ny", "xmin", "xmax", "ymin", "ymax"}')
    nx = _integer(grid, "nx", 1, MAX_GRID_SIDE)
    ny = _integer(grid, "ny", 1, MAX_GRID_SIDE)
    xmin, xmax, ymin, ymax = (_number(grid, n) for n in ("xmin", "xmax", "ymin", "ymax"))
    if not (xmin < xmax and ymin < ymax):
        raise DemoInputError(f"grid needs xmin < xmax and ymin < ymax, got x {xmin:g}..{xmax:g}, "
                             f"y {ymin:g}..{ymax:g}")
    xs = xmin + (np.arange(nx) + 0.5) * ((xmax - xmin) / nx)
    ys = ymax - (np.arange(ny) + 0.5) * ((ymax - ymin) / ny)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()]), nx, ny


def knn_regions(X, y, k, metric, cells):
    """The kNN vote of every cell: a class index, or -1 where the top vote is shared.

    Parameters
    ----------
    X : ndarray of shape (n_points, 2)
    y : ndarray of shape (n_points,), int class indices
    k : int, at most n_points
    metric : {"l1", "l2"}
    cells : ndarray of shape (n_cells, 2)

    Returns
    -------
    regions : ndarray of shape (n_cells,), int64
    """
    model = KNearestNeighbor(k=k, metric=metric).fit(X, y)
    dist, ind = model.kneighbors(cells)
    neigh_y = model.y_fit_[ind]
    scores = vote_scores(neigh_y, dist, len(model.classes_))
    top = scores.max(axis=1, keepdims=True)
    # Uniform votes are whole counts, so equality is exact.
    tie = (scores == top).sum(axis=1) >= 2
    regions = np.asarray(model.classes_, dtype=np.int64)[scores.argmax(axis=1)]
    regions[tie] = -1
    return regions


def linear_steps(W, b, X, y, steps, learning_rate, reg, loss):
    """``steps`` full-batch SGD steps on ``loss``; returns new ``(W, b)``, float64."""
    W, b = W.copy(), b.copy()
    loss_fn = get_loss(loss)
    opt = SGD()
    for _ in range(steps):
        _, dW, db = loss_fn(W, b, X, y, reg)
        opt.step([W, b], [dW, db], learning_rate)
    return W, b


@router.get("/v1/demo/presets", tags=["demos"], summary="The lecture's 2-D toy data sets")
def demo_presets():
    """``{"presets": {name: {"points": [[x, y], ...], "labels": [int, ...]}}}`` from
    :func:`imgcls.plots.toy_datasets` (XOR, ring, three modes, blobs), in about
    ``[-1.2, 1.2]^2``."""
    from ..plots.toy import toy_datasets

    return {"presets": {name: {"points": X.round(4).tolist(), "labels": y.tolist()}
                        for name, (X, y) in toy_datasets(seed=0, n_samples=PRESET_POINTS).items()}}


@router.post("/v1/demo/knn", tags=["demos"], summary="kNN decision regions of 2-D points")
async def demo_knn(request: Request):
    """Body ``{"points": [[x, y], ...], "labels": [int 0..4, ...], "k": 1..7,
    "metric": "l1"|"l2", "grid": {"nx", "ny", "xmin", "xmax", "ymin", "ymax"}}``;
    returns ``{"regions": [[class or -1, ...] * nx] * ny, "nx", "ny"}``."""
    try:
        body = await _read_json(request)
        X, y = _points(body, KNN_CLASSES)
        k = _integer(body, "k", *K_RANGE, default=1)
        metric = body.get("metric", "l2")
        if metric not in ("l1", "l2"):
            raise DemoInputError(f'metric must be "l1" or "l2", got {_short(metric)}')
        cells, nx, ny = _grid(body)
        if k > len(X):
            raise DemoInputError(f"k={k} needs at least {k} points, got {len(X)}")
    except DemoInputError as exc:
        return _error(exc)
    # The search is CPU work: off the event loop, so other requests keep flowing.
    regions = await run_in_threadpool(knn_regions, X, y, k, metric, cells)
    return {"regions": regions.reshape(ny, nx).tolist(), "nx": nx, "ny": ny}


@router.post("/v1/demo/linear", tags=["demos"],
             summary="SGD steps of a 3-class linear classifier in 2-D")
async def demo_linear(request: Request):
    """Body ``{"points", "labels": [0..2, ...], "W": 3x2, "b": 3, "steps": 0..1000,
    "learning_rate", "reg", "loss": "svm"|"softmax", "grid"}``; returns the new
    ``W``, ``b``, their ``svm_loss`` and ``softmax_loss``, and the argmax
    ``regions`` (ny x nx)."""
    try:
        body = await _read_json(request)
        X, y = _points(body, LINEAR_CLASSES)
        W = _matrix(body.get("W"), "W", (LINEAR_CLASSES, 2))
        b = _matrix(body.get("b"), "b", (LINEAR_CLASSES,))
        steps = _integer(body, "steps", 0, MAX_STEPS, default=0)
        lr = _number(body, "learning_rate", 0.0, MAX_LEARNING_RATE, default=0.1)
        reg = _number(body, "reg", 0.0, MAX_REG, default=0.0)
        loss = body.get("loss", "softmax")
        if loss not in ("svm", "softmax"):
            raise DemoInputError(f'loss must be "svm" or "softmax", got {_short(loss)}')
        cells, nx, ny = _grid(body)
        result = await run_in_threadpool(_linear_result, W, b, X, y, steps, lr, reg, loss, cells)
    except DemoInputError as exc:
        return _error(exc)
    result["regions"] = result["regions"].reshape(ny, nx).tolist()
    return result


def _linear_result(W, b, X, y, steps, learning_rate, reg, loss, cells):
    with np.errstate(over="ignore", invalid="ignore"):
        W, b = linear_steps(W, b, X, y, steps, learning_rate, reg, loss)
    if not (np.isfinite(W).all() and np.isfinite(b).all()
            and np.abs(W).max() <= MAX_ABS and np.abs(b).max() <= MAX_ABS):
        raise DemoInputError(
            f"training diverged: W or b left +-{MAX_ABS:g} within {steps} steps "
            f"(learning_rate={learning_rate:g}, reg={reg:g}); take a smaller learning rate",
            code="diverged")
    return {"W": W.tolist(), "b": b.tolist(),
            "svm_loss": svm_loss(W, b, X, y, reg)[0],
            "softmax_loss": softmax_loss(W, b, X, y, reg)[0],
            "regions": (cells @ W.T + b).argmax(axis=1)}
