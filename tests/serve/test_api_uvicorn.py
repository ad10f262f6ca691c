"""The API over real HTTP: uvicorn on 127.0.0.1 (a free port), and the ``imgcls serve`` command.

The in-thread server is stopped by each test's fixture; the command runs in a
subprocess stopped with SIGINT (Ctrl-C), and is killed if it does not stop.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from imgcls.cli.serve import bind  # noqa: E402
from imgcls.serve import ServeLimits, create_app  # noqa: E402

URL_PATH = "/v1/models/digits-softmax:predict"
# Seconds a started server or command gets to answer; far above what they need.
START_TIMEOUT = 60


class _Server:
    """uvicorn in a thread on a free port of 127.0.0.1 (no signal handlers off the main thread)."""

    def __init__(self, app):
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        # loop="asyncio": uvicorn < 0.31 would set uvloop's policy for the whole
        # process, which later tests (Playwright's sync API) cannot run under
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                    loop="asyncio"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)
        self.sock.close()
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def server(linear_model_path, knn_model_path):
    app = create_app([linear_model_path, knn_model_path],
                     limits=ServeLimits(max_body_bytes=64 * 1024))
    with _Server(app) as s:
        yield s


def _png(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)[..., 0]).save(buf, format="PNG")
    return buf.getvalue()


def _raw(port, request: bytes, timeout=10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        return _read_response(s)


def _read_response(s) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_predict_over_http_with_keep_alive(server, mnist_like):
    images = mnist_like["X_test"][:20]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        right = 0
        for im, y in zip(images, mnist_like["y_test"][:20]):
            r = client.post(URL_PATH, files={"file": ("d.png", _png(im), "image/png")})
            assert r.status_code == 200
            right += r.json()["predictions"][0]["top"][0]["index"] == y
            assert r.headers["x-content-type-options"] == "nosniff"
        assert right >= 17
        # a bad request in between leaves the connection and the server working
        bad = client.post(URL_PATH, files={"file": ("x.png", b"nope", "image/png")})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_image"
        r = client.post("/v1/models/digits-knn:predict",
                        json={"instances": [images[0].tolist()]})
        assert r.status_code == 200 and len(r.json()["predictions"][0]["neighbors"]) == 3


def test_a_stated_length_over_the_limit_is_refused_before_the_body(server):
    # the body is never sent: the answer must come from the headers alone
    head = (f"POST {URL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 ** 12}\r\n\r\n").encode()
    reply = _raw(server.port, head)
    assert reply.startswith(b"HTTP/1.1 413")
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "too_large"


def test_a_chunked_body_is_cut_off_at_the_limit_while_it_streams(server):
    # 64 KiB limit; 16 KiB chunks: the 413 must arrive after the 5th chunk, long before
    # the 10 MiB the client would send
    chunk = b'[' + b'0,' * 8191 + b'0]'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall((f"POST {URL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n").encode())
        sent = 0
        s.settimeout(0.05)
        reply = b""
        while sent < 10 << 20:
            s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
            try:
                reply = s.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except ConnectionResetError:
                break
            if reply:
                break
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert sent <= 64 * 1024 + 4 * len(chunk)


def test_malformed_http_does_not_stop_the_server(server, mnist_like):
    for junk in (b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                 b"\x16\x03\x01\x02\x00\x01\x00"):  # the start of a TLS hello
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(junk)
            try:
                reply = s.recv(4096)
            except (ConnectionResetError, TimeoutError, socket.timeout):
                reply = b""
            assert not reply.startswith(b"HTTP/1.1 5")
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        r = client.post(URL_PATH, json={"instances": [mnist_like["X_test"][0].tolist()]})
        assert r.status_code == 200


def _wait_for_url(proc) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "http://" in line or not line:
            break
    assert "http://127.0.0.1:" in line, line + proc.stderr.read()
    return line[line.index("http://"):].split()[0]


@pytest.mark.slow
def test_the_command_serves_and_stops_on_ctrl_c(linear_model_path, knn_model_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgcls", "serve", str(linear_model_path), str(knn_model_path),
         "--port", "0", "--max-body-mib", "0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = _wait_for_url(proc)
        with httpx.Client(base_url=url) as client:
            models = client.get("/v1/models").json()["models"]
            assert {m["name"] for m in models} == {"digits-softmax", "digits-knn"}
            r = client.post(URL_PATH, content=b"0" * 20000,
                            headers={"content-type": "application/json"})
            assert r.status_code == 413  # --max-body-mib 0.01 is ~10 KB
        proc.send_signal(signal.SIGINT)
        assert proc.wait(START_TIMEOUT) == 0
        assert "server stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_command_without_the_serve_extra_says_how_to_install_it(linear_model_path,
                                                                     monkeypatch, capsys):
    from imgcls.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    assert main(["serve", str(linear_model_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgcls: error:") and "pip install imgcls[serve]" in err
    assert "\n" not in err


def test_the_command_reports_bad_settings_in_one_line(linear_model_path, tmp_path, capsys):
    from imgcls.cli import main

    for argv, words in ((["--max-body-mib", "0"], "--max-body-mib"),
                        (["--max-images", "0"], "--max-images"),
                        (["--port", "70000"], "--port"),
                        (["--key-file", str(tmp_path / "nokey")], "key file")):
        assert main(["serve", str(linear_model_path), *argv]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("imgcls: error:") and words in err and "\n" not in err
    assert main(["serve", str(tmp_path / "missing.safetensors")]) == 1
    assert "no such model file" in capsys.readouterr().err


def test_bind_refuses_a_port_in_use():
    from imgcls.errors import ConfigError

    first = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            bind("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


def test_a_client_leaving_mid_body_is_no_server_error(server, mnist_like, caplog):
    head = (f"POST {URL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000\r\n\r\n").encode()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(head + b'{"instances": [[0, 0')
            time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        r = client.post(URL_PATH, json={"instances": [mnist_like["X_test"][0].tolist()]})
        assert r.status_code == 200
    assert not [r for r in caplog.records if r.name == "imgcls.serve"]
