"""``imgcls serve``: serve saved models over HTTP (JSON API, a page, the lecture's demos).

    imgcls serve knn.safetensors softmax.safetensors --port 8000
    imgcls serve model.safetensors --key-file key --max-body-mib 4 --cors-origin http://localhost:3000

Every model is loaded before the server listens, so a bad file fails at once
(one line, exit 1).  The server binds 127.0.0.1 unless ``--host`` says
otherwise, prints its URL, and stops cleanly on Ctrl-C.  Needs the ``serve``
extra (``pip install imgcls[serve]``).
"""

from __future__ import annotations

import socket
import sys

from ..errors import ConfigError

__all__ = ["register", "build_limits", "bind"]


def register(subparsers) -> None:
    from ..serve.limits import ServeLimits

    d = ServeLimits()
    p = subparsers.add_parser(
        "serve", help="serve saved models over HTTP: JSON API, a page to try them, demos",
        description="Serve saved models over HTTP: the JSON API (/v1/models, "
                    "/v1/models/NAME:predict, /healthz, /openapi.json), a page to try a model "
                    "(/) and the lecture's kNN and linear demos (/demo/knn, /demo/linear). "
                    "Each model is named after its file's stem. Needs pip install imgcls[serve].")
    p.add_argument("models", nargs="+", metavar="MODEL_FILE", help="model files to serve")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; "
                        "0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--key-file", metavar="FILE", default=None,
                   help="demand a valid HMAC-SHA256 signature under the key in FILE from every "
                        "model file")
    p.add_argument("--max-body-mib", type=float, default=d.max_body_bytes / (1 << 20),
                   metavar="MIB", help="largest request body in MiB (default %(default)g)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, metavar="N",
                   help="largest width*height of an uploaded image (default %(default)d)")
    p.add_argument("--max-images", type=int, default=d.max_images, metavar="N",
                   help="most images in one request (default %(default)d)")
    p.add_argument("--max-json-numbers", type=int, default=d.max_json_numbers, metavar="N",
                   help="most numbers in one JSON body (default %(default)d)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from ORIGIN (e.g. http://localhost:3000) to call the "
                        "API (repeatable); no CORS by default")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=_serve)


def build_limits(args):
    """The :class:`~imgcls.serve.ServeLimits` of the command-line flags."""
    from ..serve.limits import ServeLimits

    mib = args.max_body_mib
    if not (mib > 0 and mib * (1 << 20) >= 1 and mib <= 1 << 20):
        raise ConfigError(f"--max-body-mib must be a positive size up to 1 TiB, got {mib}")
    for flag, value in (("--max-pixels", args.max_pixels), ("--max-images", args.max_images),
                        ("--max-json-numbers", args.max_json_numbers)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    return ServeLimits(max_body_bytes=int(mib * (1 << 20)), max_pixels=args.max_pixels,
                       max_images=args.max_images, max_json_numbers=args.max_json_numbers)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6), or ConfigError saying why not."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: cannot resolve ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _serve(args) -> int:
    from ..serve import require_serve_stack

    try:
        require_serve_stack()
        import uvicorn
    except ImportError as exc:
        raise ConfigError(str(exc) if "imgcls[serve]" in str(exc) else
                          f"imgcls serve needs the serve extra ({exc.name} is missing): "
                          "pip install imgcls[serve]") from None
    from ..serve.app import create_app
    from .models import read_key_file

    limits = build_limits(args)
    key = read_key_file(args.key_file)
    app = create_app(args.models, key=key, limits=limits, cors_origins=args.cors_origin)
    sock = bind(args.host, args.port)
    names = ", ".join(app.state.models)
    print(f"imgcls: serving {len(app.state.models)} model(s) ({names}) at {_url(sock)}  "
          "(Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=args.access_log,
                            server_header=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down on the first Ctrl-C, then raises the signal again for
        # the default handler: the server has already stopped cleanly
        pass
    finally:
        sock.close()
    print("imgcls: server stopped", file=sys.stderr, flush=True)
    return 0
