"""Fixtures: a real HTTP server on 127.0.0.1 with good and misbehaving mirrors."""

from __future__ import annotations

import http.server
import threading

import pytest

from datasets_helpers import SHARED_MNIST


class _Handler(http.server.BaseHTTPRequestHandler):
    """Paths are /<behaviour>/<filename>; the files served live in ``server.files``.

    Behaviours: ``good`` (honours Range), ``norange`` (ignores Range),
    ``fail500``, ``missing`` (404), ``bad`` (wrong bytes, same length),
    ``html`` (an error page with status 200), ``cut`` (announces the full
    Content-Length, sends half, closes).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        return None

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        server.user_agents.append(self.headers.get("User-Agent"))
        _, behaviour, filename = self.path.split("/", 2)
        data = server.files.get(filename)
        if behaviour == "fail500":
            return self._send(500, b"internal error")
        if data is None or behaviour == "missing":
            return self._send(404, b"not found")
        if behaviour == "bad":
            return self._send(200, bytes(reversed(data)))
        if behaviour == "html":
            return self._send(200, b"<!DOCTYPE html><html><body>Service unavailable</body></html>")
        if behaviour == "cut":
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        rng = self.headers.get("Range")
        if behaviour == "good" and rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0])
            if start >= len(data):
                return self._send(416, b"")
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return None
        return self._send(200, data)

    def _send(self, code: int, body: bytes):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_server():
    """A ThreadingHTTPServer on 127.0.0.1:<free port>; ``.url(behaviour)`` gives a mirror base."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files = {}
    server.requests = []
    server.user_agents = []
    server.daemon_threads = True
    host, port = server.server_address
    server.url = lambda behaviour: f"http://{host}:{port}/{behaviour}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def mnist_root():
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"the shared MNIST is not at {SHARED_MNIST.resolve()}")
    return SHARED_MNIST


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Point the cache at a temporary folder so no test touches the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("IMGCLS_DATA", str(cache))
    return cache
