"""The HTML pages of the server: try a model, and the lecture's demos.

Every asset comes from the package (``imgcls/serve/static/``): the pages work
offline, with no CDN and no external font.  The files are read once, at
import, into a table keyed by file name; a request names a key of that table
and never reaches a file-system path.  Pages are sent with a Content Security
Policy that allows scripts, styles and connections to this server only, and
images from it or from ``data:``/``blob:`` URLs (thumbnails, previews): even a
class name that slipped into the page as markup could run nothing.
"""

from __future__ import annotations

import mimetypes
import os
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from .app import error_response

router = APIRouter()

#: Pages: URL path -> file in ``static/``.
PAGES = {"/": "index.html", "/demo/knn": "knn.html", "/demo/linear": "linear.html"}

#: Media types of the asset kinds the package ships.
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".png": "image/png",
                ".svg": "image/svg+xml"}

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data: blob:; connect-src 'self'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# (X-Content-Type-Options: nosniff is added to every response by the app.)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _load_assets():
    """``{file name: (bytes, media type)}`` of every file in ``static/``."""
    assets = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        if not entry.is_file():
            continue
        media = _MEDIA_TYPES.get(os.path.splitext(entry.name)[1]) \
            or mimetypes.guess_type(entry.name)[0]
        assets[entry.name] = (entry.read_bytes(), media or "application/octet-stream")
    return assets


ASSETS = _load_assets()


def _asset(name):
    content, media = ASSETS[name]
    return Response(content, media_type=media, headers=_HEADERS)


def _page_route(path, name):
    def page():
        return _asset(name)

    page.__name__ = f"page_{name.partition('.')[0]}"
    router.add_api_route(path, page, methods=["GET"], include_in_schema=False,
                         response_class=Response)


for _path, _name in PAGES.items():
    _page_route(_path, _name)


@router.get("/static/{name}", include_in_schema=False)
def static_asset(name: str):
    """One file of ``static/``, looked up by name in :data:`ASSETS`."""
    if name not in ASSETS:
        return error_response(404, "not_found", "no such static file")
    return _asset(name)
