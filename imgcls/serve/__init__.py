"""``imgcls serve``: models over HTTP, a page to try them, and the lecture's demos.

Needs the ``serve`` extra (``pip install imgcls[serve]``: FastAPI, uvicorn,
python-multipart).  :func:`create_app` builds the ASGI application (see
:mod:`imgcls.serve.app`); :class:`ServeLimits` holds the per-request limits.
Importing this package without the extra raises ImportError naming it.
"""

from .limits import ServeLimits

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401
except ImportError as exc:
    raise ImportError(f"imgcls serve needs the serve extra ({exc.name} is missing): "
                      "pip install imgcls[serve]") from exc

from .app import create_app  # noqa: E402

__all__ = ["create_app", "ServeLimits"]
