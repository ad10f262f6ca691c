"""The pages and their assets in process: served from the package, offline, under a CSP."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from imgcls.serve import pages  # noqa: E402

STATIC = Path(pages.__file__).parent / "static"


@pytest.fixture(scope="module")
def client(linear_model_path):
    from fastapi.testclient import TestClient

    from imgcls.serve import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with TestClient(create_app([linear_model_path])) as c:
            yield c


@pytest.mark.parametrize("path,name", sorted(pages.PAGES.items()))
def test_each_page_is_its_packaged_file_under_the_csp(client, path, name):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == (STATIC / name).read_bytes()
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_every_asset_a_page_names_is_served_from_the_package(client):
    named = set()
    for name in pages.PAGES.values():
        html = (STATIC / name).read_text()
        assert "<script>" not in html and " style=" not in html, "the CSP allows no inline code"
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not re.match(r"(https?:)?//", url), f"{name} loads {url} from elsewhere"
            if url.startswith("/static/"):
                named.add(url)
    assert named == {f"/static/{n}" for n in pages.ASSETS if not n.endswith(".html")}
    for url in named:
        r = client.get(url)
        assert r.status_code == 200 and r.content == (STATIC / url.rsplit("/", 1)[1]).read_bytes()
    assert client.get("/static/try.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    # nothing in the scripts or styles reaches outside the server
    for name in pages.ASSETS:
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://", text), f"{name} names an outside URL"
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text \
            and "document.write" not in text, f"{name} parses strings as HTML"


@pytest.mark.parametrize("name", ["nope.js", "..%2Fpages.py", "%2E%2E%2F__init__.py",
                                  "%2E%2E", "__init__.py", "pages.py", "STYLE.CSS"])
def test_static_names_outside_the_table_are_404_json(client, name):
    r = client.get(f"/static/{name}")
    assert r.status_code == 404
    assert "error" in r.json()


def test_the_package_data_holds_every_static_file():
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib")

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["imgcls.serve"]
    shipped = {p.name for pattern in patterns for p in STATIC.parent.glob(pattern)}
    assert shipped == {p.name for p in STATIC.iterdir()} == set(pages.ASSETS)
