"""The pages in a real browser: Debian's chromium driven by Playwright, against a real uvicorn.

One browser and one server (127.0.0.1, a free port, stopped at the end) per
module; each test opens a fresh page, fails on any JavaScript error, and leaves
a screenshot in its ``tmp_path``.  The models are the suite's 28x28 digits
models (``conftest.py``), an MNIST kNN model when the shared MNIST is present,
and a model whose class names and metadata are HTML.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install imgcls[test])")

import imgcls  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from imgcls.serve import ServeLimits, create_app  # noqa: E402
from imgcls.serve.demos import PRESET_POINTS, knn_regions, _grid  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
#: MNIST training images in the kNN model: enough for a sure answer on a test
#: digit, few enough to load in a second.
MNIST_TRAIN = 10_000
#: A small body limit, so that "over the size limit" is cheap to provoke.
MAX_BODY = 1 << 20
#: Class names and metadata a hostile model file may carry.
EVIL = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "<b>bold</b>"]
#: Milliseconds a wait may take before the test fails: generous, since a shared
#: CI machine can be slow; a passing wait returns as soon as its condition holds.
WAIT_MS = 60_000

expect.set_options(timeout=WAIT_MS)

# A browser and a server start once per module (~3 s); each test then takes a
# few seconds on 2 cores.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason=f"Debian's chromium is not at {CHROMIUM} "
                                        "(apt-get install chromium; .ci/run installs it)")]


@pytest.fixture(scope="module")
def mnist_knn_path(model_dir):
    """A kNN model on MNIST's first training images, with the test digits; or None."""
    if not SHARED_MNIST.is_dir():
        return None
    from imgcls.neighbors import KNearestNeighbor

    ds = imgcls.load_dataset("mnist", root=SHARED_MNIST)
    model = KNearestNeighbor(k=3, metric="l2").fit(ds.X_train[:MNIST_TRAIN],
                                                   ds.y_train[:MNIST_TRAIN])
    path = imgcls.save(model, model_dir / "mnist-knn.safetensors", classes=ds.classes)
    return path, ds.X_test[:20], ds.y_test[:20], ds.classes


@pytest.fixture(scope="module")
def evil_model_path(mnist_like, model_dir):
    """A kNN model of three classes named with HTML, and HTML in its metadata."""
    from imgcls.neighbors import KNearestNeighbor

    keep = mnist_like["y_train"] < 3
    model = KNearestNeighbor(k=1).fit(mnist_like["X_train"][keep], mnist_like["y_train"][keep])
    return imgcls.save(model, model_dir / "evil.safetensors", classes=EVIL,
                       preprocessing={"note": "<img src=x onerror=alert(3)>"})


@pytest.fixture(scope="module")
def server(linear_model_path, knn_model_path, evil_model_path, mnist_knn_path):
    """A real uvicorn on 127.0.0.1 in a thread; yields its base URL, stops it at the end."""
    paths = [linear_model_path, knn_model_path, evil_model_path]
    if mnist_knn_path is not None:
        paths.append(mnist_knn_path[0])
    app = create_app(paths, limits=ServeLimits(max_body_bytes=MAX_BODY))
    # loop="asyncio": uvicorn before 0.31 (the floor is 0.30) installs uvloop's event
    # loop policy process-wide when it runs, and Playwright's sync API then hangs
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off", access_log=False, loop="asyncio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="uvicorn-browser-tests", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server, tmp_path, request):
    """A fresh page; fails the test on any JavaScript error, dialog or off-server request."""
    context = browser.new_context(base_url=server, viewport={"width": 1200, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    problems = []
    pg.on("pageerror", lambda exc: problems.append(f"JavaScript error: {exc}"))
    pg.on("dialog", lambda d: (problems.append(f"a dialog opened: {d.message}"), d.dismiss()))
    pg.on("request", lambda r: r.url.startswith((server, "data:", "blob:"))
          or problems.append(f"request off the server: {r.url}"))
    yield pg
    pg.screenshot(path=str(tmp_path / f"{request.node.name[:60]}.png"), full_page=True)
    context.close()
    assert not problems, problems


def open_page(page, path):
    response = page.goto(path)
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("body[data-ready='1']", state="attached")


def choose_model(page, name):
    page.select_option("#model", name)
    estimator = "KNearestNeighbor" if "knn" in name or name == "evil" else "Softmax"
    expect(page.locator("#model-info dd").first).to_have_text(estimator)


def top_classes(page):
    page.wait_for_selector("#result-section:not([hidden]) #top li")
    return page.locator("#top li .name").all_text_contents()


def wait_for_error(page):
    page.wait_for_selector("#error:not([hidden])")
    text = page.locator("#error").text_content()
    assert text and "\n" not in text
    assert page.locator("#error").is_visible()
    return text


def test_page_lists_the_models_and_their_metadata(page, server, mnist_knn_path):
    open_page(page, "/")
    names = page.locator("#model option").all_text_contents()
    expected = ["digits-softmax", "digits-knn", "evil"] + (["mnist-knn"] if mnist_knn_path else [])
    assert names == expected
    info = page.locator("#model-info").inner_text()
    assert "Softmax" in info and "28 × 28 × 1" in info and "digit 0" in info
    assert page.locator("#draw-section").is_visible()
    # a linear model of images shows its class templates, each a loaded PNG
    page.wait_for_selector("#templates-section:not([hidden]) img")
    assert page.locator("#templates figcaption").all_text_contents() == \
        [f"digit {c}" for c in range(10)]
    assert page.evaluate("[...document.querySelectorAll('#templates img')]"
                         ".every(i => i.complete && i.naturalWidth === 28)")


def test_an_uploaded_digit_shows_its_class_first_and_its_neighbours(page, tmp_path, mnist_like,
                                                                    mnist_knn_path):
    if mnist_knn_path is not None:
        _, X_test, y_test, classes = mnist_knn_path
        model, image, label = "mnist-knn", X_test[0], classes[int(y_test[0])]
    else:  # the suite's digits (MNIST's shape) when the shared MNIST is absent
        model, image = "digits-knn", mnist_like["X_test"][0]
        label = mnist_like["classes"][int(mnist_like["y_test"][0])]
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_bytes(image))
    open_page(page, "/")
    choose_model(page, model)
    page.set_input_files("#file", str(digit))
    top = top_classes(page)
    assert len(top) == 5 and top[0] == label
    assert page.locator("#preview").is_visible()
    # kNN: the 3 nearest training images, with their labels, as loaded thumbnails
    page.wait_for_selector("#neighbors-section:not([hidden]) img")
    captions = page.locator("#neighbors figcaption").all_text_contents()
    assert len(captions) == 3 and all(c.startswith(label + " · #") for c in captions)
    assert page.evaluate("[...document.querySelectorAll('#neighbors img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    assert "ms" in page.locator("#timing").text_content()


_DROP_OR_PASTE = """([b64, how]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], "digit.png", { type: "image/png" }));
    if (how === "drop") {
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    } else {
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
    }
}"""


def test_a_dropped_or_pasted_image_is_classified_like_the_estimator(page, mnist_like,
                                                                   knn_model_path):
    model = imgcls.load(knn_model_path)
    open_page(page, "/")
    choose_model(page, "digits-knn")
    for how, digit in (("drop", 0), ("paste", 1)):
        image = mnist_like["X_test"][mnist_like["y_test"] == digit][0]
        expected = [mnist_like["classes"][c] for c in model.predict_topk(image[None], 5)[0]]
        page.evaluate("document.getElementById('result-section').hidden = true")
        page.evaluate(_DROP_OR_PASTE, [base64.b64encode(png_bytes(image)).decode(), how])
        assert top_classes(page) == expected, how


def draw_digit_zero(page):
    """An ellipse on the pad, as a person draws a 0."""
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    angles = np.linspace(0, 2 * np.pi, 40)
    page.mouse.move(cx + 60, cy)
    page.mouse.down()
    for a in angles:
        page.mouse.move(cx + 60 * np.cos(a), cy + 90 * np.sin(a))
    page.mouse.up()


def test_a_drawn_digit_is_sent_like_mnist_and_predicted(page):
    open_page(page, "/")
    with page.expect_request(lambda r: "/v1/models/digits-softmax:predict" in r.url) as sent:
        draw_digit_zero(page)
    top = top_classes(page)
    assert len(top) == 5 and top[0] == "digit 0"
    pixels = np.array(json.loads(sent.value.post_data)["instances"][0])
    assert pixels.shape == (28, 28) and pixels.max() == 255 and pixels.min() == 0
    # MNIST's framing: the ink fits 20x20, its centre of mass at the centre
    rows, cols = np.nonzero(pixels)
    assert np.ptp(rows) < 20 and np.ptp(cols) < 20
    ys, xs = np.indices(pixels.shape) + 0.5
    mass = pixels.sum()
    assert abs((pixels * ys).sum() / mass - 14) <= 1 and abs((pixels * xs).sum() / mass - 14) <= 1
    # the 28x28 preview shows what was sent
    small = page.evaluate("Array.from(document.getElementById('pad-small').getContext('2d')"
                          ".getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))")
    assert np.array_equal(np.array(small).reshape(28, 28), pixels)
    page.click("#clear-pad")
    page.click("#predict-pad")
    assert "empty" in wait_for_error(page)


def test_html_in_class_names_and_metadata_stays_text(page, tmp_path, mnist_like):
    open_page(page, "/")
    n_scripts = page.locator("script").count()
    choose_model(page, "evil")
    info = page.locator("#model-info").text_content()
    assert EVIL[0] in info and EVIL[1] in info and "<img src=x onerror=alert(3)>" in info
    digit = tmp_path / "digit.png"
    digit.write_bytes(png_bytes(mnist_like["X_test"][mnist_like["y_test"] == 0][0]))
    page.set_input_files("#file", str(digit))
    assert sorted(top_classes(page)) == sorted(EVIL)
    page.wait_for_selector("#neighbors figcaption")
    assert page.locator("#neighbors figcaption").first.text_content().startswith(EVIL[0])
    # nothing was parsed as markup: no new script, no <b>, no image but the page's own
    assert page.locator("script").count() == n_scripts
    assert page.locator("main b").count() == 0
    assert page.evaluate("[...document.images].every(i => !i.src.endsWith('/x'))")


def test_each_bad_request_shows_a_one_line_message(page, tmp_path):
    open_page(page, "/")
    samples = {
        "not an image": b"this is text, not an image\n",
        "truncated": png_bytes(np.random.default_rng(0).integers(0, 256, (28, 28, 1)))[:400],
        "pixel bomb": _png_header(6000, 6000),
        "over the size limit": b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY),
    }
    codes = {"not an image": "bad_image", "truncated": "bad_image", "pixel bomb": "too_large",
             "over the size limit": "too_large", "malformed JSON": "bad_json",
             "wrong channel count": "wrong_shape", "unknown model": "unknown_model"}
    seen = set()
    for kind, data in samples.items():
        path = tmp_path / f"{kind.replace(' ', '-')}.png"
        path.write_bytes(data)
        page.evaluate("document.getElementById('error').hidden = true")
        page.set_input_files("#file", str(path))
        seen.add(wait_for_error(page))
        assert page.get_attribute("#error", "data-code") == codes[kind]
        assert page.locator("#result-section").is_hidden()
    assert len(seen) == len(samples), "each kind of bad file has its own message"
    # requests the page never makes itself, rewritten on their way to the real server
    cases = {
        "malformed JSON": lambda r: r.continue_(post_data='{"instances": [[1, 2'),
        "wrong channel count": lambda r: r.continue_(post_data=json.dumps(
            {"instances": [np.zeros((28, 28, 3), int).tolist()]})),
        "unknown model": lambda r: r.continue_(url=r.request.url.replace("digits-softmax",
                                                                         "no-such-model")),
    }
    for kind, handler in cases.items():
        page.route("**/v1/models/*:predict*", handler)
        page.evaluate("document.getElementById('error').hidden = true")
        draw_digit_zero(page)
        seen.add(wait_for_error(page))
        assert page.get_attribute("#error", "data-code") == codes[kind]
        page.unroute("**/v1/models/*:predict*")
    assert len(seen) == len(samples) + len(cases)
    # and the server still serves
    draw_digit_zero(page)
    assert top_classes(page)[0] == "digit 0"


def png_bytes(image):
    """A PNG file of one (H, W, 1) uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)[..., 0]).save(buf, format="PNG")
    return buf.getvalue()


def _png_header(width, height):
    """A PNG whose header claims ``width`` x ``height`` grey pixels (its data is cut)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\0\0\0\0IDAT\x35\xaf\x06\x1e")


def regions_rgba(page):
    """The regions canvas as an (ny, nx, 4) uint8 array."""
    data = page.evaluate("(() => { const c = document.getElementById('regions');"
                         " return [c.width, c.height, Array.from(c.getContext('2d')"
                         ".getImageData(0, 0, c.width, c.height).data)]; })()")
    w, h, pixels = data
    return np.array(pixels, dtype=np.uint8).reshape(h, w, 4)


def white(rgba):
    return (rgba[..., :3] == 255).all(axis=-1)


def set_knn(page, k=None, metric=None):
    """Change K and/or the metric; the regions once the server's answer for them is drawn."""
    if k is not None:
        page.locator("#k").fill(str(k))
    if metric is not None:
        page.check(f"#metric-{metric}")
    regions = page.locator("#regions")
    expect(regions).to_have_attribute("data-k", page.locator("#k").input_value())
    expect(regions).to_have_attribute(
        "data-metric", page.locator("input[name=metric]:checked").get_attribute("value"))
    expect(page.locator("#error")).to_be_hidden()
    return regions_rgba(page)


def test_knn_demo_regions_follow_k_and_the_metric(page, tmp_path):
    from imgcls.plots.toy import toy_datasets

    open_page(page, "/demo/knn")
    page.wait_for_selector("#regions[data-renders]", state="attached")
    k1 = regions_rgba(page)
    assert k1.shape == (100, 100, 4) and not white(k1).any(), "K=1 has no ties"
    k2 = set_knn(page, k=2)
    assert white(k2).any(), "an even K leaves white vote ties"
    # the white cells are exactly the server's ties for the XOR preset
    X, y = toy_datasets(seed=0, n_samples=PRESET_POINTS)["xor"]
    cells, nx, ny = _grid({"grid": {"nx": 100, "ny": 100, "xmin": -1.5, "xmax": 1.5,
                                    "ymin": -1.5, "ymax": 1.5}})
    ties = knn_regions(X.round(4), y, 2, "l2", cells).reshape(ny, nx) == -1
    assert np.array_equal(white(k2), ties)
    page.screenshot(path=str(tmp_path / "knn-xor-k2.png"))
    k7 = set_knn(page, k=7)
    assert not white(k7).any() and (k7 != k1).any(), "an odd K over 2 classes never ties"
    l1 = set_knn(page, metric="l1")
    assert page.get_attribute("#regions", "data-metric") == "l1"
    assert (l1 != k7).any(), "L1 and L2 regions differ"
    # a click adds a point of the chosen class and redraws
    page.check("#class-1")
    before = page.get_attribute("#regions", "data-renders")
    page.locator("#points").click(position={"x": 200, "y": 200})
    expect(page.locator("#regions")).not_to_have_attribute("data-renders", before)
    assert page.get_attribute("#regions", "data-points") == str(PRESET_POINTS + 1)
    # K above the number of points: the server's message shows
    page.click("#clear")
    page.locator("#points").click(position={"x": 100, "y": 100})
    page.locator("#k").fill("3")
    assert "k=3" in wait_for_error(page)


def losses(page):
    return (float(page.locator("#svm-loss").text_content()),
            float(page.locator("#softmax-loss").text_content()))


def test_linear_demo_steps_lower_the_loss(page, tmp_path):
    from imgcls.linear import softmax_loss, svm_loss

    open_page(page, "/demo/linear")
    page.wait_for_selector("#regions[data-renders]", state="attached")
    start = losses(page)
    # what the page shows is imgcls's loss of the page's W, b and points
    W = np.array([[1, 2], [2, -4], [3, -1]], float)
    b = np.array([0, 0.5, -0.5])
    X = np.array([[0.5, 0.4], [0.8, 0.3], [0.3, 0.8], [-0.4, 0.3], [-0.3, 0.7], [-0.7, 0.2],
                  [0.7, -0.4], [0.5, -0.6], [-0.4, -0.5]])
    y = np.repeat([0, 1, 2], 3)
    assert start[0] == pytest.approx(svm_loss(W, b, X, y, 0.001)[0], abs=1e-4)
    assert start[1] == pytest.approx(softmax_loss(W, b, X, y, 0.001)[0], abs=1e-4)
    before = regions_rgba(page)
    for n in (1, 2, 3):
        page.click("#step")
        expect(page.locator("#step-count")).to_have_text(str(10 * n))
    trained = losses(page)
    page.screenshot(path=str(tmp_path / "linear-30-steps.png"))
    assert trained[1] < 0.8 * start[1]
    assert (regions_rgba(page) != before).any()
    # a slider edits W live: the loss changes without a step
    renders = page.get_attribute("#regions", "data-renders")
    page.locator("#sliders input").first.fill("-4")
    expect(page.locator("#regions")).not_to_have_attribute("data-renders", renders)
    assert losses(page) != trained
    # dragging the first class's line moves it: its b slider follows
    b0 = page.locator("#sliders input").nth(6).input_value()
    page.locator("#overlay").scroll_into_view_if_needed()
    box = page.locator("#overlay").bounding_box()
    px = page.evaluate("""(() => {
        const W = [...document.querySelectorAll('#sliders input')].map(i => Number(i.value));
        // the point of line 0 nearest the origin, in CSS pixels of the 400-pixel stage
        const n2 = W[0] * W[0] + W[1] * W[1];
        return [(-W[6] * W[0] / n2 + 1.5) / 3 * 400, (1.5 + W[6] * W[1] / n2) / 3 * 400];
    })()""")
    page.mouse.move(box["x"] + px[0], box["y"] + px[1])
    page.mouse.down()
    page.mouse.move(box["x"] + px[0] + 30, box["y"] + px[1] + 30, steps=5)
    page.mouse.up()
    assert page.locator("#sliders input").nth(6).input_value() != b0
