"""Every bad request gets a 4xx JSON error with a one-line reason, and the server keeps serving."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import imgcls  # noqa: E402

URL = "/v1/models/digits-softmax:predict"
KNN_URL = "/v1/models/digits-knn:predict"


def _client(paths, **kwargs):
    from fastapi.testclient import TestClient

    from imgcls.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return TestClient(create_app(paths, **kwargs))


@pytest.fixture(scope="module")
def client(linear_model_path, knn_model_path):
    return _client([linear_model_path, knn_model_path])


@pytest.fixture(scope="module")
def digit(mnist_like):
    return mnist_like["X_test"][0]


def _png(array, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG") if mode else \
        Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A grey PNG whose header states width x height, with ``idat`` as its only data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _files(*contents):
    return [("file", (f"f{i}.png", c, "image/png")) for i, c in enumerate(contents)]


def _assert_error(r, status, code, *words):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(err) == {"code", "message"} and err["code"] == code
    assert err["message"] and "\n" not in err["message"] and len(err["message"]) < 500
    for w in words:
        assert w in err["message"], err["message"]


def _still_serving(client, digit):
    r = client.post(URL, json={"instances": [digit.tolist()]})
    assert r.status_code == 200, r.text


def _bomb(side):
    # side x side black pixels: a valid PNG of a few KB that decodes to side**2 bytes
    return _png_claiming(side, side, zlib.compress(b"\0" * ((side + 1) * side), 9))


BAD_UPLOADS = {
    "not an image": (b"GIF? no, just text", 422, "bad_image", "not in a format"),
    "empty file": (b"", 422, "bad_image", "empty"),
    "truncated": ("truncated", 422, "bad_image", "truncated"),
    "header larger than its data": (_png_claiming(3000, 3000, zlib.compress(b"\0" * 10)), 422,
                                    "bad_image", "f1.png"),
    "pixel bomb over max_pixels": (_bomb(5000), 413, "too_large", "max_pixels"),
    "header over Pillow's bomb limit": (_png_claiming(20000, 20000, zlib.compress(b"\0" * 10)),
                                        413, "too_large", "decompression-bomb"),
    "32-bit pixels": ("mode I", 422, "bad_image", "32-bit"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads(client, digit, case):
    content, status, code, word = BAD_UPLOADS[case]
    if content == "truncated":
        full = _png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))
        content = full[:len(full) // 2]
    elif content == "mode I":  # a TIFF of 32-bit integers
        buf = io.BytesIO()
        Image.fromarray(np.full((28, 28), 70000, dtype=np.int32)).save(buf, format="TIFF")
        content = buf.getvalue()
    r = client.post(URL, files=_files(_png(digit[..., 0]), content))
    _assert_error(r, status, code, word)
    assert "file 1" in r.json()["error"]["message"]  # names which upload
    _still_serving(client, digit)


def test_pixel_limit_is_a_setting(linear_model_path, digit):
    from imgcls.serve import ServeLimits

    small = _client([linear_model_path], limits=ServeLimits(max_pixels=400))
    r = small.post(URL, files=_files(_png(digit[..., 0])))  # 784 pixels
    _assert_error(r, 413, "too_large", "784", "max_pixels=400")
    ok = small.post(URL, files=_files(_png(np.zeros((20, 20), np.uint8))))  # resized to 28x28
    assert ok.status_code == 200


def test_body_over_the_size_limit(linear_model_path, digit):
    from imgcls.serve import ServeLimits

    client = _client([linear_model_path], limits=ServeLimits(max_body_bytes=8192))
    big = _png(np.random.default_rng(1).integers(0, 256, (100, 100), dtype=np.uint8))
    _assert_error(client.post(URL, files=_files(big)), 413, "too_large", "8192")
    _assert_error(client.post(URL, json={"instances": [[0] * 5000]}), 413, "too_large")
    _still_serving(client, digit)


def test_too_many_images(linear_model_path, digit):
    from imgcls.serve import ServeLimits

    client = _client([linear_model_path], limits=ServeLimits(max_images=2))
    png = _png(digit[..., 0])
    _assert_error(client.post(URL, files=_files(png, png, png)), 413, "too_many_images", "2")
    _assert_error(client.post(URL, json={"instances": [digit.tolist()] * 3}), 413,
                  "too_many_images", "3 instances")
    assert client.post(URL, files=_files(png, png)).status_code == 200


def test_too_many_json_numbers(linear_model_path, digit):
    from imgcls.serve import ServeLimits

    client = _client([linear_model_path], limits=ServeLimits(max_json_numbers=1000))
    _assert_error(client.post(URL, json={"instances": [digit.tolist(), digit.tolist()]}), 413,
                  "too_large", "1000 numbers")
    assert client.post(URL, json={"instances": [digit.tolist()]}).status_code == 200


def test_wrong_channel_count(client, digit, mnist_like, tmp_path):
    rgb = np.repeat(digit, 3, axis=2)
    _assert_error(client.post(URL, json={"instances": [rgb.tolist()]}), 422, "wrong_shape",
                  "3 channels", "the model takes 1")
    # a model of 2-channel images cannot take an image file at all
    from imgcls.neighbors import KNearestNeighbor

    X2 = np.repeat(mnist_like["X_train"][:30], 2, axis=3)
    path = imgcls.save(KNearestNeighbor(k=1).fit(X2, mnist_like["y_train"][:30]),
                       tmp_path / "two.safetensors")
    two = _client([path])
    _assert_error(two.post("/v1/models/two:predict", files=_files(_png(digit[..., 0]))), 422,
                  "wrong_channels", "2 channels")
    # ... but its own pixel arrays
    assert two.post("/v1/models/two:predict",
                    json={"instances": [X2[0].tolist()]}).status_code == 200


BAD_JSON = {
    "malformed": (b'{"instances": [[1, 2,', 400, "bad_json"),
    "not utf-8": (b'{"instances": "\xff\xfe"}', 400, "bad_json"),
    "NaN literal": (b'{"instances": [[NaN]]}', 400, "bad_json"),
    "Infinity literal": (b'{"instances": [[Infinity]]}', 400, "bad_json"),
    "deep nesting": (b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "bad_json"),
    "huge integer": (b'{"instances": [[' + b"9" * 5000 + b"]]}", 400, "bad_json"),
    "not an object": (b"[1, 2, 3]", 422, "bad_request"),
    "no instances": (b'{"top_k": 3}', 422, "bad_request"),
    "empty instances": (b'{"instances": []}', 422, "bad_request"),
    "unknown key": (b'{"instances": [[0]], "topk": 3}', 422, "bad_request"),
    "instance not an array": (b'{"instances": [7]}', 422, "wrong_shape"),
    "ragged": (b'{"instances": [[[1, 2], [3]]]}', 422, "wrong_shape"),
    "wrong size": (b'{"instances": [[1, 2, 3]]}', 422, "wrong_shape"),
    "strings": (b'{"instances": [["a", "b"]]}', 422, "bad_pixels"),
    "null": (b'{"instances": [[null, 1]]}', 422, "bad_pixels"),
    "all booleans": (b'{"instances": [[true, false]]}', 422, "bad_pixels"),
    "objects": (b'{"instances": [[{}, 1]]}', 422, "bad_pixels"),
    "top_k zero": (b'{"instances": [[0]], "top_k": 0}', 422, "bad_request"),
    "top_k a string": (b'{"instances": [[0]], "top_k": "5"}', 422, "bad_request"),
    "thumbnails a number": (b'{"instances": [[0]], "thumbnails": 3}', 422, "bad_request"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_json(client, digit, case):
    body, status, code = BAD_JSON[case]
    if b"[[0]]" in body:  # a valid instance, so that the option is what fails
        body = body.replace(b"[[0]]", ("[" + str(digit.ravel().tolist()) + "]").encode())
    r = client.post(URL, content=body, headers={"content-type": "application/json"})
    _assert_error(r, status, code)
    _still_serving(client, digit)


@pytest.mark.parametrize("value, word", [(-1, "0..255"), (256, "0..255"), (1e999, "non-finite"),
                                         (True, "true/false")])
def test_bad_pixel_values(client, digit, value, word):
    pixels = digit.ravel().astype(object)
    pixels[5] = value
    r = client.post(URL, json={"instances": [pixels.tolist()]}) if value != 1e999 else \
        client.post(URL, content=b'{"instances": [[' + b"0, " * 783 + b"1e999]]}",
                    headers={"content-type": "application/json"})
    _assert_error(r, 422, "bad_pixels", word)


def test_unknown_model_route_and_method(client, digit):
    r = client.post("/v1/models/nope:predict", json={"instances": [digit.tolist()]})
    _assert_error(r, 404, "unknown_model", "'nope'", "digits-softmax")
    _assert_error(client.get("/v1/models/nope/templates"), 404, "unknown_model")
    _assert_error(client.get("/v2/nothing"), 404, "not_found")
    _assert_error(client.get(URL), 405, "method_not_allowed")
    _still_serving(client, digit)


def test_bad_multipart_bodies(client, digit):
    png = _png(digit[..., 0])
    boundary = "XyZ"
    ctype = {"content-type": f"multipart/form-data; boundary={boundary}"}
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + b"\r\n"
    whole = part + f"--{boundary}--\r\n".encode()
    assert client.post(URL, content=whole, headers=ctype).status_code == 200
    _assert_error(client.post(URL, content=part, headers=ctype), 400, "bad_request", "truncated")
    _assert_error(client.post(URL, content=whole,
                              headers={"content-type": "multipart/form-data"}), 400,
                  "bad_request", "boundary")
    _assert_error(client.post(URL, content=b"", headers=ctype), 400, "bad_request")
    other = whole.replace(b'name="file"', b'name="picture"')
    _assert_error(client.post(URL, content=other, headers=ctype), 422, "bad_request", "picture")
    _assert_error(client.post(URL, data={"top_k": "3"}), 415,
                  "unsupported_media_type")  # application/x-www-form-urlencoded
    r = client.post(URL, files=[("top_k", (None, "3"))])
    _assert_error(r, 422, "bad_request", "no image")
    r = client.post(URL, files=_files(png) + [("top_k", (None, "many"))])
    _assert_error(r, 422, "bad_request", "top_k")
    _assert_error(client.post(URL, content=png, headers={"content-type": "image/png"}), 415,
                  "unsupported_media_type")
    _assert_error(client.post(URL + "?top_k=abc", files=_files(png)), 422, "bad_request",
                  "top_k")
    _still_serving(client, digit)


def test_feature_vector_models_take_json_only(mnist_like, tmp_path):
    from imgcls.linear import LinearSVM

    X = mnist_like["X_train"][:100].reshape(100, -1).astype(np.float32) / 255
    path = imgcls.save(LinearSVM(epochs=2, random_state=0).fit(X, mnist_like["y_train"][:100]),
                       tmp_path / "vec.safetensors")
    client = _client([path])
    url = "/v1/models/vec:predict"
    _assert_error(client.post(url, files=_files(_png(mnist_like["X_test"][0][..., 0]))), 409,
                  "not_an_image_model")
    ok = client.post(url, json={"instances": [X[0].tolist()]})
    assert ok.status_code == 200 and "neighbors" not in ok.json()["predictions"][0]
    # feature vectors are not pixels: any finite value is accepted, the length is checked
    assert client.post(url, json={"instances": [(X[0] * -1e3).tolist()]}).status_code == 200
    _assert_error(client.post(url, json={"instances": [X[0, :10].tolist()]}), 422, "wrong_shape",
                  "784")
    _assert_error(client.get("/v1/models/vec/templates"), 409, "no_templates")


def test_a_mixed_stream_of_bad_requests_never_gives_5xx(client, digit, mnist_like):
    rng = np.random.default_rng(3)
    good = _png(digit[..., 0])
    bad = [c for c, *_ in BAD_UPLOADS.values() if isinstance(c, bytes)] + \
        [b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8))]
    expect = client.post(URL, files=_files(good)).json()["predictions"][0]["top"][0]["index"]
    for i in range(60):
        if i % 3 == 0:
            r = client.post(URL, files=_files(bad[i % len(bad)]))
            assert 400 <= r.status_code < 500, r.text
        else:
            r = client.post(URL, files=_files(good))
            assert r.status_code == 200
            assert r.json()["predictions"][0]["top"][0]["index"] == expect
