"""``imgcls serve``: models over HTTP, a page to try them, and the lecture's demos.

Needs the ``serve`` extra (``pip install imgcls[serve]``: FastAPI, uvicorn,
python-multipart).  :func:`create_app` builds the ASGI application (see
:mod:`imgcls.serve.app`); :class:`ServeLimits` holds the per-request limits.
:class:`ServeLimits` imports without the extra (the CLI shows its defaults);
``create_app`` without it raises ImportError naming the extra.
"""

from .limits import ServeLimits

__all__ = ["create_app", "ServeLimits"]


def require_serve_stack() -> None:
    """ImportError naming ``pip install imgcls[serve]`` when the serve extra is missing."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"imgcls serve needs the serve extra ({exc.name} is missing): "
                          "pip install imgcls[serve]") from exc


def __getattr__(name):
    if name == "create_app":
        require_serve_stack()
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
