"""The demo endpoints against plain references, and every bad input as a 4xx JSON error."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from imgcls.linear.reference import softmax_loss_naive, svm_loss_naive  # noqa: E402
from imgcls.serve import demos  # noqa: E402

GRID = {"nx": 24, "ny": 18, "xmin": -1.0, "xmax": 1.0, "ymin": -0.5, "ymax": 1.5}


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    app.include_router(demos.router)
    with TestClient(app) as c:
        yield c


def cell_centres(grid):
    """Cell centres in the documented order: row 0 at the top, column 0 at the left."""
    dx = (grid["xmax"] - grid["xmin"]) / grid["nx"]
    dy = (grid["ymax"] - grid["ymin"]) / grid["ny"]
    return [[(grid["xmin"] + (i + 0.5) * dx, grid["ymax"] - (j + 0.5) * dy)
             for i in range(grid["nx"])] for j in range(grid["ny"])]


def knn_oracle(points, labels, k, metric, grid):
    """The lecture's kNN vote, one cell at a time; -1 where the top count is shared."""
    X = np.asarray(points, dtype=np.float64)
    out = []
    for row in cell_centres(grid):
        out_row = []
        for x, y in row:
            diff = X - [x, y]
            d = np.abs(diff).sum(1) if metric == "l1" else np.sqrt((diff ** 2).sum(1))
            nearest = np.argsort(d, kind="stable")[:k]
            counts = np.bincount(np.asarray(labels)[nearest], minlength=5)
            top = counts.max()
            out_row.append(-1 if (counts == top).sum() > 1 else int(counts.argmax()))
        out.append(out_row)
    return out


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
def test_knn_regions_match_the_plain_vote(client, k, metric):
    rng = np.random.default_rng(k)
    points = rng.uniform(-1, 1.5, (40, 2)).round(3).tolist()
    labels = rng.integers(0, 4, 40).tolist()
    r = client.post("/v1/demo/knn", json={"points": points, "labels": labels, "k": k,
                                          "metric": metric, "grid": GRID})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["nx"], body["ny"]) == (GRID["nx"], GRID["ny"])
    assert body["regions"] == knn_oracle(points, labels, k, metric, GRID)
    if k % 2 == 0:
        assert any(-1 in row for row in body["regions"]), "an even K over 4 classes ties somewhere"


def test_knn_two_points_and_k2_tie_everywhere(client):
    r = client.post("/v1/demo/knn", json={"points": [[-0.5, 0.5], [0.5, 0.5]], "labels": [0, 3],
                                          "k": 2, "metric": "l2", "grid": GRID})
    assert r.status_code == 200
    assert {c for row in r.json()["regions"] for c in row} == {-1}
    # K=1: the left half is class 0, the right half class 3 (the bisector is x = 0)
    r = client.post("/v1/demo/knn", json={"points": [[-0.5, 0.5], [0.5, 0.5]], "labels": [0, 3],
                                          "k": 1, "metric": "l1", "grid": GRID})
    regions = np.array(r.json()["regions"])
    half = GRID["nx"] // 2
    assert (regions[:, :half] == 0).all() and (regions[:, half:] == 3).all()


def linear_body(**changes):
    rng = np.random.default_rng(0)
    centres = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    labels = np.repeat([0, 1, 2], 10)
    points = centres[labels] + rng.normal(0, 0.4, (30, 2))
    body = {"points": points.tolist(), "labels": labels.tolist(),
            "W": [[0.1, -0.2], [0.3, 0.05], [-0.1, 0.2]], "b": [0.0, 0.1, -0.1],
            "steps": 0, "learning_rate": 0.5, "reg": 0.01, "loss": "softmax", "grid": GRID}
    body.update(changes)
    return body


@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_linear_step_is_the_lecture_gradient_step(client, loss):
    body = linear_body(loss=loss, steps=1)
    W0, b0 = np.array(body["W"]), np.array(body["b"])
    X, y = np.array(body["points"]), np.array(body["labels"])
    naive = svm_loss_naive if loss == "svm" else softmax_loss_naive
    _, dW, db = naive(W0, b0, X, y, body["reg"])
    r = client.post("/v1/demo/linear", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    W1, b1 = np.array(out["W"]), np.array(out["b"])
    np.testing.assert_allclose(W1, W0 - 0.5 * dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b1, b0 - 0.5 * db, rtol=1e-12, atol=1e-12)
    assert out["svm_loss"] == pytest.approx(svm_loss_naive(W1, b1, X, y, body["reg"])[0])
    assert out["softmax_loss"] == pytest.approx(softmax_loss_naive(W1, b1, X, y, body["reg"])[0])
    scores = np.array(cell_centres(GRID)) @ W1.T + b1
    assert out["regions"] == scores.argmax(axis=2).tolist()


def test_linear_steps_lower_the_loss_and_zero_steps_keep_w(client):
    first = client.post("/v1/demo/linear", json=linear_body()).json()
    assert first["W"] == linear_body()["W"] and first["b"] == linear_body()["b"]
    trained = client.post("/v1/demo/linear", json=linear_body(steps=100)).json()
    assert trained["softmax_loss"] < 0.5 * first["softmax_loss"]
    assert len({c for row in trained["regions"] for c in row}) == 3


def test_presets_are_the_lecture_toy_data(client):
    from imgcls.plots.toy import toy_datasets

    presets = client.get("/v1/demo/presets").json()["presets"]
    expected = toy_datasets(seed=0, n_samples=demos.PRESET_POINTS)
    assert list(presets) == list(expected) == ["xor", "ring", "three_modes", "blobs"]
    for name, (X, y) in expected.items():
        np.testing.assert_allclose(presets[name]["points"], X, atol=1e-4)
        assert presets[name]["labels"] == y.tolist()
        # each preset is a valid kNN request as it stands
        r = client.post("/v1/demo/knn", json={**presets[name], "k": 3, "grid": GRID})
        assert r.status_code == 200


BAD_KNN = [
    (b"{", 400, "bad_json"),
    (b"[1, 2]", 400, "bad_json"),
    (b'{"points": [[NaN, 0]], "labels": [0]}', 400, "bad_json"),
    (b"[" * 100_000, 400, "bad_json"),
    (b"\xff\xfe", 400, "bad_json"),
    (b" " * (demos.MAX_BODY_BYTES + 1), 413, "too_large"),
]


def knn_body(**changes):
    body = {"points": [[0, 0], [1, 1], [0, 1]], "labels": [0, 1, 2], "k": 1, "metric": "l2",
            "grid": dict(GRID)}
    body.update(changes)
    return body


BAD_FIELDS = [
    {"points": []},
    {"points": [[0, 0]] * (demos.MAX_POINTS + 1), "labels": [0] * (demos.MAX_POINTS + 1)},
    {"points": [[0, 0, 0], [1, 1, 1], [0, 1, 1]]},
    {"points": [[0, "a"], [1, 1], [0, 1]]},
    {"points": [[0, 1e300], [1, 1], [0, 1]]},
    {"points": [[0, 10 ** 400], [1, 1], [0, 1]]},
    {"grid": {**GRID, "xmax": 10 ** 400}},
    {"k": 10 ** 400},
    {"labels": [0, 1]},
    {"labels": [0, 1, 5]},
    {"labels": [0, 1, True]},
    {"k": 0}, {"k": 8}, {"k": 2.5}, {"k": 3.0}, {"k": 4},
    {"metric": "cosine"},
    {"grid": None},
    {"grid": {**GRID, "nx": 201}},
    {"grid": {**GRID, "ny": 0}},
    {"grid": {**GRID, "xmin": 2.0}},
    {"grid": {**GRID, "ymax": 1e7}},
]


@pytest.mark.parametrize("raw,status,code", BAD_KNN)
def test_bad_bodies_are_json_errors(client, raw, status, code):
    for path in ("/v1/demo/knn", "/v1/demo/linear"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == status
        error = r.json()["error"]
        assert error["code"] == code and "\n" not in error["message"]


@pytest.mark.parametrize("change", BAD_FIELDS)
def test_bad_knn_fields_are_422(client, change):
    r = client.post("/v1/demo/knn", content=json.dumps(knn_body(**change)),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("change", [
    {"W": [[1, 0], [0, 1]]}, {"W": [[1, 0], [0, 1], [1, "x"]]}, {"b": [0, 0]},
    {"labels": [3] * 30}, {"steps": -1}, {"steps": demos.MAX_STEPS + 1},
    {"learning_rate": -0.1}, {"learning_rate": 10 ** 400}, {"reg": 11}, {"loss": "hinge"},
    {"W": [[1, 0], [0, 1], [10 ** 400, 0]]}, {"loss": "x" * 100_000},
])
def test_bad_linear_fields_are_422(client, change):
    r = client.post("/v1/demo/linear", json=linear_body(**change))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "bad_request"
    assert len(r.json()["error"]["message"]) < 200, "a message quotes input, never all of it"


def test_diverging_training_is_a_422_not_a_nan(client):
    r = client.post("/v1/demo/linear",
                    json=linear_body(steps=demos.MAX_STEPS, learning_rate=10, reg=10))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "diverged"
