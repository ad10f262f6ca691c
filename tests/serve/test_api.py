"""The JSON API in process (FastAPI's TestClient): listings, predictions against the
estimators themselves, thumbnails, templates, CORS and the safety headers."""

from __future__ import annotations

import base64
import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import imgcls  # noqa: E402
from imgcls.pipeline import rank_labels, read_image_for_model  # noqa: E402



def png_bytes(image):
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)[..., 0]).save(buf, format="PNG")
    return buf.getvalue()


def _client(paths, **kwargs):
    from fastapi.testclient import TestClient

    from imgcls.serve import create_app

    with warnings.catch_warnings():
        # starlette's notice that its TestClient prefers a newer httpx fork
        warnings.simplefilter("ignore", DeprecationWarning)
        return TestClient(create_app(paths, **kwargs))


@pytest.fixture(scope="module")
def client(linear_model_path, knn_model_path, svm_model_path):
    return _client([linear_model_path, knn_model_path, svm_model_path])


def _files(images):
    return [("file", (f"digit{i}.png", png_bytes(im), "image/png")) for i, im in enumerate(images)]


def _image(data_url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):]))))


def _same_prediction(a, b):
    assert [(t["index"], t["class"]) for t in a["top"]] == \
        [(t["index"], t["class"]) for t in b["top"]]
    np.testing.assert_allclose([t["score"] for t in a["top"]], [t["score"] for t in b["top"]],
                               rtol=1e-9, atol=1e-15)


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["x-content-type-options"] == "nosniff"


def test_models_lists_every_model_with_its_input_and_metadata(client, mnist_like):
    r = client.get("/v1/models")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"digits-softmax", "digits-knn", "digits-svm"}
    soft = models["digits-softmax"]
    assert soft["estimator"] == "Softmax" and soft["kind"] == "linear"
    assert soft["classes"] == mnist_like["classes"]
    assert soft["input"] == {"image_shape": [28, 28, 1], "n_features": 784}
    assert soft["metadata"]["estimator"] == "Softmax"
    assert soft["metadata"]["format"] == "imgcls-model"
    assert models["digits-knn"]["kind"] == "knn"
    # no names saved: str() of classes_
    assert models["digits-svm"]["classes"] == [str(i) for i in range(10)]


def test_linear_predict_matches_the_estimator(client, linear_model_path, mnist_like, tmp_path):
    model = imgcls.load(linear_model_path)
    images = mnist_like["X_test"][:6]
    r = client.post("/v1/models/digits-softmax:predict", files=_files(images))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "digits-softmax" and body["score"] == "probability"
    assert body["time_ms"]["handler"] >= body["time_ms"]["model"] >= 0
    # the oracle reads the same files through imgcls predict's reader
    X = []
    for i, im in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(im))
        X.append(read_image_for_model(tmp_path / f"{i}.png", model.image_shape_)[0])
    X = np.stack(X)
    proba = model.predict_proba(X)
    ranked = rank_labels(model, X, 5)
    assert len(body["predictions"]) == len(images)
    for p, pr, rk in zip(body["predictions"], proba, ranked):
        assert [t["index"] for t in p["top"]] == rk.tolist()
        assert [t["class"] for t in p["top"]] == [mnist_like["classes"][c] for c in rk]
        np.testing.assert_allclose([t["score"] for t in p["top"]], pr[rk], rtol=1e-12)
        assert "neighbors" not in p
    tops = [p["top"][0]["index"] for p in body["predictions"]]
    assert np.mean(np.array(tops) == mnist_like["y_test"][:6]) >= 5 / 6


@pytest.mark.parametrize("path_fixture", ["linear_model_path", "svm_model_path"])
def test_linear_scores_are_class_scores_bit_for_bit(request, path_fixture, mnist_like):
    from imgcls.serve.app import load_served_model
    from imgcls.serve.api import linear_scores

    served = load_served_model(request.getfixturevalue(path_fixture))
    for X in (mnist_like["X_test"][:1], mnist_like["X_test"][:37],
              mnist_like["X_test"][:5].astype(np.float32) + 0.25):
        np.testing.assert_array_equal(linear_scores(served, X),
                                      served.estimator.class_scores(X))


def test_json_pixels_in_every_layout_equal_the_png_upload(client, mnist_like):
    im = mnist_like["X_test"][3]
    by_file = client.post("/v1/models/digits-softmax:predict", files=_files([im])).json()
    for layout in (im, im[..., 0], im.reshape(-1)):
        r = client.post("/v1/models/digits-softmax:predict",
                        json={"instances": [layout.tolist(), layout.tolist()]})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == 2
        for p in preds:  # the same ranking; scores as BLAS gives them for one or two rows
            _same_prediction(p, by_file["predictions"][0])
    # float pixels are accepted as they are
    r = client.post("/v1/models/digits-softmax:predict",
                    json={"instances": [(im.astype(float) + 0.5).clip(0, 255).tolist()]})
    assert r.status_code == 200


def test_svm_scores_are_its_class_scores(client, svm_model_path, mnist_like):
    model = imgcls.load(svm_model_path)
    im = mnist_like["X_test"][:2]
    body = client.post("/v1/models/digits-svm:predict?top_k=3",
                       json={"instances": im.tolist()}).json()
    assert body["score"] == "score"
    scores = model.class_scores(im)
    for p, s, rk in zip(body["predictions"], scores, rank_labels(model, im, 3)):
        assert [t["index"] for t in p["top"]] == rk.tolist()
        np.testing.assert_allclose([t["score"] for t in p["top"]], s[rk], rtol=1e-12)


def test_knn_predict_lists_the_neighbours_of_one_search(client, knn_model_path, mnist_like):
    model = imgcls.load(knn_model_path)
    images = mnist_like["X_test"][10:14]
    r = client.post("/v1/models/digits-knn:predict", files=_files(images))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["score"] == "vote_share"
    dist, ind = model.kneighbors(images)
    topk = model.predict_topk(images, 5)
    proba = model.predict_proba(images)
    for p, d, i, tk, pr in zip(body["predictions"], dist, ind, topk, proba):
        assert [t["index"] for t in p["top"]] == tk.tolist()
        np.testing.assert_allclose([t["score"] for t in p["top"]], pr[tk])
        assert [n["index"] for n in p["neighbors"]] == i.tolist()
        np.testing.assert_allclose([n["distance"] for n in p["neighbors"]], d)
        assert [n["class"] for n in p["neighbors"]] == \
            [mnist_like["classes"][c] for c in model.y_fit_[i]]
        assert all("thumbnail" not in n for n in p["neighbors"])


def test_knn_thumbnails_are_the_training_images(client, knn_model_path, mnist_like):
    model = imgcls.load(knn_model_path)
    im = mnist_like["X_test"][20]
    r = client.post("/v1/models/digits-knn:predict",
                    json={"instances": [im.tolist()], "thumbnails": True, "top_k": 2})
    assert r.status_code == 200, r.text
    pred = r.json()["predictions"][0]
    assert len(pred["top"]) == 2 and len(pred["neighbors"]) == model.k
    for n in pred["neighbors"]:
        np.testing.assert_array_equal(_image(n["thumbnail"]),
                                      model.X_fit_[n["index"]].reshape(28, 28))


def test_top_k_from_the_query_and_the_body(client, mnist_like):
    im = mnist_like["X_test"][0].tolist()
    url = "/v1/models/digits-softmax:predict"
    assert len(client.post(url + "?top_k=3", json={"instances": [im]}).json()
               ["predictions"][0]["top"]) == 3
    # the body's value wins over the query's
    assert len(client.post(url + "?top_k=3", json={"instances": [im], "top_k": 7}).json()
               ["predictions"][0]["top"]) == 7
    # more than the classes: every class, once
    top = client.post(url, json={"instances": [im], "top_k": 100}).json()["predictions"][0]["top"]
    assert sorted(t["index"] for t in top) == list(range(10))
    r = client.post(url, files=_files([mnist_like["X_test"][0]]) + [("top_k", (None, "2"))])
    assert len(r.json()["predictions"][0]["top"]) == 2


def test_templates_of_a_linear_model(client, linear_model_path, mnist_like):
    model = imgcls.load(linear_model_path)
    r = client.get("/v1/models/digits-softmax/templates")
    assert r.status_code == 200
    templates = r.json()["templates"]
    assert [t["class"] for t in templates] == mnist_like["classes"]
    for t, w in zip(templates, model.templates_):
        img = _image(t["png"]).astype(float)
        assert img.shape == (28, 28) and img.min() == 0 and img.max() == 255
        # the brightest pixel is the largest weight (each template is stretched over its range)
        assert np.argmax(img) == np.argmax(w[..., 0])
    r = client.get("/v1/models/digits-knn/templates")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_templates"


def test_untrusted_class_names_and_metadata_come_back_as_escaped_json(tmp_path, mnist_like):
    from imgcls.neighbors import KNearestNeighbor

    names = ["<script>alert(1)</script>", "a & b", '"><img src=x onerror=alert(1)>'] + \
        [f"c{i}" for i in range(7)]
    model = KNearestNeighbor(k=1).fit(mnist_like["X_train"][:200], mnist_like["y_train"][:200])
    path = imgcls.save(model, tmp_path / "<i>evil&.safetensors", classes=names)
    client = _client([path])
    listing = client.get("/v1/models")
    assert b"<" not in listing.content and b">" not in listing.content
    assert listing.json()["models"][0]["classes"] == names
    assert listing.json()["models"][0]["name"] == "<i>evil&"
    im = mnist_like["X_train"][0].tolist()
    r = client.post("/v1/models/<i>evil&:predict", json={"instances": [im]})
    assert r.status_code == 200 and b"<" not in r.content
    assert r.json()["predictions"][0]["top"][0]["class"] == names[mnist_like["y_train"][0]]


def test_no_cors_unless_origins_are_given(linear_model_path):
    origin = {"Origin": "http://elsewhere.example"}
    plain = _client([linear_model_path])
    r = plain.get("/v1/models", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    pre = plain.options("/v1/models", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers

    cors = _client([linear_model_path], cors_origins=["http://elsewhere.example"])
    r = cors.get("/v1/models", headers=origin)
    assert r.headers["access-control-allow-origin"] == "http://elsewhere.example"
    r = cors.get("/v1/models", headers={"Origin": "http://other.example"})
    assert "access-control-allow-origin" not in r.headers


def test_openapi_is_generated_and_docs_need_no_cdn(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    predict = spec["paths"]["/v1/models/{name}:predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert "/v1/models" in spec["paths"] and "/healthz" in spec["paths"]
    # Swagger UI and ReDoc would load scripts from a CDN: off
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_create_app_refuses_bad_model_sets(linear_model_path, tmp_path):
    from imgcls.errors import ConfigError, ModelFileError
    from imgcls.serve import create_app

    with pytest.raises(ConfigError, match="no model file"):
        create_app([])
    other = tmp_path / "sub"
    other.mkdir()
    copy = other / linear_model_path.name
    copy.write_bytes(linear_model_path.read_bytes())
    with pytest.raises(ConfigError, match="named 'digits-softmax'"):
        create_app([linear_model_path, copy])
    with pytest.raises(ModelFileError, match="no such model file"):
        create_app([tmp_path / "missing.safetensors"])
    # with a key, an unsigned file is refused
    with pytest.raises(ModelFileError):
        create_app([linear_model_path], key=b"k" * 32)


def test_a_signed_model_is_served_with_its_key(mnist_like, tmp_path):
    from imgcls.neighbors import KNearestNeighbor

    key = b"0123456789abcdef0123456789abcdef"
    model = KNearestNeighbor(k=1).fit(mnist_like["X_train"][:50], mnist_like["y_train"][:50])
    path = imgcls.save(model, tmp_path / "signed.safetensors", key=key)
    client = _client([path], key=key)
    assert client.get("/v1/models").json()["models"][0]["name"] == "signed"
    assert json.loads(client.get("/healthz").content) == {"status": "ok"}


def test_neighbours_listed_are_capped_but_all_vote(mnist_like, tmp_path):
    from imgcls.neighbors import KNearestNeighbor
    from imgcls.serve import ServeLimits

    model = KNearestNeighbor(k=40, metric="l2").fit(mnist_like["X_train"][:300],
                                                    mnist_like["y_train"][:300])
    path = imgcls.save(model, tmp_path / "wide.safetensors")
    client = _client([path], limits=ServeLimits(max_neighbors=32))
    im = mnist_like["X_test"][:2]
    r = client.post("/v1/models/wide:predict?thumbnails=true",
                    json={"instances": im.tolist()})
    assert r.status_code == 200
    _, ind = model.kneighbors(im)
    for p, i, pr, tk in zip(r.json()["predictions"], ind, model.predict_proba(im),
                            model.predict_topk(im, 5)):
        assert [n["index"] for n in p["neighbors"]] == i[:32].tolist()
        assert all(n["thumbnail"].startswith("data:image/png;base64,") for n in p["neighbors"])
        assert [t["index"] for t in p["top"]] == tk.tolist()
        np.testing.assert_allclose([t["score"] for t in p["top"]], pr[tk])


def test_uploads_never_touch_the_file_system(client, mnist_like, monkeypatch):
    import builtins
    import os
    import tempfile

    def refuse(*args, **kwargs):
        raise AssertionError(f"a request opened a file: {args[:1]}")

    files = _files(mnist_like["X_test"][:3])
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100, 1), dtype=np.uint8)
    big = [("file", ("big.png", png_bytes(noise), "image/png"))]
    assert len(big[0][1][1]) > 1 << 20
    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    assert client.post("/v1/models/digits-softmax:predict", files=files).status_code == 200
    # larger than the 1 MiB at which form parsers usually spill to disk
    assert client.post("/v1/models/digits-knn:predict", files=big).status_code == 200
