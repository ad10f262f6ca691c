"""Serve section: ``imgcls serve`` over loopback HTTP with MNIST models (issue 12).

    python -m bench --only serve [--quick]     # through the harness
    python -m bench.serve [--quick]            # alone; writes bench/results/serve.md

A softmax model and a kNN model (k = 3, L2, all 60,000 training images) are
trained on MNIST and saved; ``python -m imgcls serve`` runs them in a
subprocess on 127.0.0.1 (one uvicorn worker).  The load generator is this
process: asyncio (uvloop when installed) over raw keep-alive sockets, the
requests built once as bytes, each response's headers and JSON parsed.  It
shares the machine's cores with the server, so throughput is a lower bound of
what a remote client would see.

Rows:

* ``latency``: one client, one MNIST test digit per request as a PNG upload
  (multipart), p50/p99 of the server's own ``time_ms.handler`` and of the end
  to end time (request written -> response read); also the same digit as JSON
  pixels, and the kNN model;
* ``throughput``: 1, 8 and 32 concurrent clients, a fixed number of requests
  each run, requests per second and errors;
* ``mixed``: 32 clients, 30 % bad requests (not an image, truncated, a header
  its data cannot fill, a pixel bomb, malformed JSON, wrong shape, values out
  of range, an unknown model, a body over the limit): 5xx count, wrong answers
  among the good requests (checked against the estimator in this process),
  whether the server is still alive; the RSS of the server process after the
  first 1,000 requests and at the end of 100,000, and its peak (``VmHWM``),
  read from ``/proc/PID/status`` (what psutil reports).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from .common import REPO, RESULTS, load_mnist, markdown_table

# Bodies above this are refused by the server under test (the "over the limit" case).
MAX_BODY_MIB = 0.25
# Requests of each run, full / quick.
N_LATENCY = (3000, 300)
N_KNN = (300, 40)
N_THROUGHPUT = (6000, 600)
N_MIXED = (100_000, 6000)
RSS_FIRST = 1000
CONCURRENCY = (1, 8, 32)
BAD_FRACTION = 0.3
START_TIMEOUT_S = 120
BOUNDARY = "imgclsbench"


# ----------------------------------------------------------------- requests
def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                              0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _request(path: str, body: bytes, ctype: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def upload(path: str, data: bytes) -> bytes:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"digit.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + data + \
        f"\r\n--{BOUNDARY}--\r\n".encode()
    return _request(path, body, f"multipart/form-data; boundary={BOUNDARY}")


def json_request(path: str, doc) -> bytes:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return _request(path, body, "application/json")


def bad_requests(path: str, digit: np.ndarray) -> dict[str, tuple[bytes, int]]:
    """Name -> (request bytes, expected status) of each kind of bad request."""
    png = _png(digit)
    return {
        "not an image": (upload(path, b"hello, not an image"), 422),
        "truncated PNG": (upload(path, png[:len(png) // 2]), 422),
        "header its data cannot fill": (upload(path, _png_claiming(3000, 3000,
                                                                   zlib.compress(b"\0"))), 422),
        "pixel bomb": (upload(path, _png_claiming(30000, 30000, zlib.compress(b"\0"))), 413),
        "malformed JSON": (json_request(path, b'{"instances": [[1, 2,'), 400),
        "wrong shape": (json_request(path, {"instances": [[1, 2, 3]]}), 422),
        "out of range": (json_request(path, {"instances": [[300] * 784]}), 422),
        "unknown model": (json_request("/v1/models/nope:predict",
                                       {"instances": [digit.tolist()]}), 404),
        "body over the limit": (upload(path, b"\0" * int(MAX_BODY_MIB * (1 << 20))), 413),
    }


# ------------------------------------------------------------------- client
async def _read_response(reader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    close = re.search(rb"(?i)\r\nconnection: *close", head) is not None
    return status, body, close


class Stats:
    def __init__(self):
        self.e2e, self.handler, self.statuses = [], [], {}
        self.wrong = 0
        self.bad_status = 0
        self.cpu_s = None


async def _client(port, requests, order, stats: Stats, on_count=None):
    """Send ``requests[i]`` for each i of ``order``, one at a time, on a keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in order:
            data, want_status, want_top = requests[i]
            t0 = time.perf_counter()
            writer.write(data)
            try:
                status, body, close = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                status, body, close = 0, b"", True
            stats.e2e.append(time.perf_counter() - t0)
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if status != want_status:
                stats.bad_status += 1
            elif status == 200:
                doc = json.loads(body)
                stats.handler.append(doc["time_ms"]["handler"] / 1e3)
                if doc["predictions"][0]["top"][0]["index"] != want_top:
                    stats.wrong += 1
            if on_count is not None:
                on_count()
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def load(port, requests, n, clients, seed=0, on_count=None, server=None
         ) -> tuple[Stats, float]:
    """``n`` requests drawn from ``requests`` over ``clients`` connections; (stats, seconds).

    With ``server``, ``stats.cpu_s`` is the CPU time the server process spent meanwhile.
    """
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(requests), n) if len(requests) > 1 else np.zeros(n, int)
    stats = Stats()

    async def main():
        parts = np.array_split(order, clients)
        await asyncio.gather(*(_client(port, requests, p.tolist(), stats, on_count)
                               for p in parts))

    cpu0 = server.cpu_seconds() if server is not None else None
    t0 = time.perf_counter()
    _run(main())
    seconds = time.perf_counter() - t0
    stats.cpu_s = server.cpu_seconds() - cpu0 if server is not None else None
    return stats, seconds


def _run(coro):
    try:
        import uvloop

        return uvloop.run(coro) if hasattr(uvloop, "run") else asyncio.run(coro)
    except ImportError:
        return asyncio.run(coro)


# ------------------------------------------------------------------- server
class Server:
    """``python -m imgcls serve`` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, model_paths):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imgcls", "serve", *map(str, model_paths), "--port", "0",
             "--max-body-mib", str(MAX_BODY_MIB)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "http://" in line or not line:
                break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.stop()
            raise RuntimeError(f"imgcls serve did not start: {line}{self.proc.stderr.read()}")
        self.port = int(m.group(1))

    def memory(self) -> dict:
        """RSS now and its peak so far (VmHWM), MiB."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    fields[name] = int(value.split()[0]) / 1024
        return fields

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# ------------------------------------------------------------------- models
def train_models(data, directory: Path, quick: bool):
    import warnings

    import imgcls
    from imgcls.linear import Softmax
    from imgcls.neighbors import KNearestNeighbor

    n = 6000 if quick else len(data.X_train)
    X, y = data.X_train[:n], data.y_train[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soft = Softmax(optimizer="lbfgs", epochs=30, reg=1e-4,
                       random_state=0).fit(X, y)
    knn = KNearestNeighbor(k=3, metric="l2").fit(X, y)
    paths = (imgcls.save(soft, directory / "mnist-softmax.safetensors", classes=data.classes),
             imgcls.save(knn, directory / "mnist-knn.safetensors", classes=data.classes))
    return soft, knn, paths


def _ms(values, q) -> float | None:
    return float(np.percentile(values, q) * 1e3) if len(values) else None


def _row(name, model, clients, stats: Stats, seconds, **extra) -> dict:
    n = len(stats.e2e)
    return {"run": name, "model": model, "clients": clients, "requests": n,
            "handler_p50_ms": _ms(stats.handler, 50), "handler_p99_ms": _ms(stats.handler, 99),
            "e2e_p50_ms": _ms(stats.e2e, 50), "e2e_p99_ms": _ms(stats.e2e, 99),
            "req_per_s": n / seconds,
            "server_cpu_ms_per_req": stats.cpu_s * 1e3 / n if stats.cpu_s is not None else None,
            "5xx": sum(c for s, c in stats.statuses.items()
                                                 if s >= 500 or s == 0),
            "unexpected_status": stats.bad_status, "wrong_answers": stats.wrong, **extra}


def run(data, quick: bool) -> list[dict]:
    from imgcls.datasets._decode import decode_bytes

    q = 1 if quick else 0
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="imgcls-bench-serve-") as tmp:
        soft, knn, paths = train_models(data, Path(tmp), quick)
        server = Server(paths)
        try:
            soft_path = "/v1/models/mnist-softmax:predict"
            knn_path = "/v1/models/mnist-knn:predict"
            digits = data.X_test[:50]
            pngs = [_png(d) for d in digits]
            # expected answers from the estimators, on the pixels the server decodes
            X = np.stack([decode_bytes(p, "L", (28, 28)) for p in pngs])
            top_soft = np.argsort(-soft.class_scores(X), axis=1, kind="stable")[:, 0]
            top_knn = np.searchsorted(knn.classes_, knn.predict_topk(X, 1)[:, 0])
            good = [(upload(soft_path, p), 200, int(t)) for p, t in zip(pngs, top_soft)]
            good_json = [(json_request(soft_path, {"instances": [d.tolist()]}), 200, int(t))
                         for d, t in zip(digits, top_soft)]
            good_knn = [(upload(knn_path, p), 200, int(t)) for p, t in zip(pngs, top_knn)]

            load(server.port, good, 200, 1)  # warm-up: imports, JIT, allocator
            load(server.port, good_knn, 10, 1)
            stats, s = load(server.port, good, N_LATENCY[q], 1, server=server)
            rows.append(_row("latency (PNG upload)", "softmax", 1, stats, s))
            stats, s = load(server.port, good_json, N_LATENCY[q], 1, server=server)
            rows.append(_row("latency (JSON pixels)", "softmax", 1, stats, s))
            stats, s = load(server.port, good_knn, N_KNN[q], 1, server=server)
            rows.append(_row("latency (PNG upload)", f"kNN k=3 L2, {len(knn.X_fit_)} images",
                             1, stats, s))
            for c in CONCURRENCY:
                stats, s = load(server.port, good, N_THROUGHPUT[q], c, seed=c, server=server)
                rows.append(_row("throughput", "softmax", c, stats, s))

            bad = bad_requests(soft_path, digits[0])
            bad_list = [(req, status, None) for req, status in bad.values()]
            n_good = round(len(bad_list) * (1 - BAD_FRACTION) / BAD_FRACTION)
            mixed = bad_list + [good[i % len(good)] for i in range(n_good)]
            first = {}
            count = [0]

            def on_count():
                count[0] += 1
                if count[0] == RSS_FIRST:
                    first.update(server.memory())

            stats, s = load(server.port, mixed, N_MIXED[q], 32, seed=7, on_count=on_count,
                            server=server)
            end = server.memory()
            alive = server.alive()
            rows.append(_row("mixed, 30% bad", "softmax", 32, stats, s,
                             rss_after_1000_MiB=first.get("VmRSS"),
                             rss_at_end_MiB=end["VmRSS"], rss_peak_MiB=end["VmHWM"],
                             rss_growth_pct=100 * (end["VmRSS"] / first["VmRSS"] - 1),
                             server_alive=alive))
        finally:
            code = server.stop()
        rows[-1]["server_exit_code"] = code
    print(f"written: {write_results(rows, quick)}")
    return rows


def write_results(rows, quick: bool) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("serve-quick.md" if quick else "serve.md")
    latency = [{k: r[k] for k in ("run", "model", "clients", "requests", "handler_p50_ms",
                                  "handler_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "req_per_s",
                                  "server_cpu_ms_per_req", "5xx", "unexpected_status", "wrong_answers")} for r in rows]
    mixed = [r for r in rows if "rss_at_end_MiB" in r]
    load1 = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = [f"# serve — {time.strftime('%Y-%m-%d %H:%M')}", "",
            f"machine: {os.cpu_count()} cores (server and load generator share them); "
            f"quick={quick}; `python -m bench.serve`; load average at the end {load1} "
            "(other jobs on the machine: every time below includes waiting for a core)", "",
            "`handler`: the server's own `time_ms.handler` (decode + predict + response "
            "content); `e2e`: request written to response read, over a keep-alive "
            "connection; `server_cpu_ms_per_req`: CPU time of the server process "
            "(/proc/PID/stat) divided by the requests, the cost that does not depend on "
            "waiting for a core; one MNIST test digit per request (PNG upload unless "
            "stated).", "",
            markdown_table(latency), "",
            "Memory of the server process over the mixed run (RSS, MiB):", "",
            markdown_table([{k: r.get(k) for k in ("requests", "rss_after_1000_MiB",
                                                   "rss_at_end_MiB", "rss_growth_pct",
                                                   "rss_peak_MiB", "server_alive",
                                                   "server_exit_code")} for r in mixed]), ""]
    path.write_text("\n".join(text))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = run(load_mnist(), args.quick)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
