"""Webhook acknowledgement benchmark: swapyard beside adnanh/webhook, both under wrk.

    .venv/bin/python bench/webhooks.py [--seconds 10] [--connections 200] [--statuses]

Needs Debian's `wrk` and `webhook`; swapyard runs as `swapyard serve` (Granian).
Both servers check the same HMAC-SHA256 rule on the same signed GitHub push
body (the project's fixture tests/data/webhooks/github/push.json, 10.6 KB,
pretty-printed as a forge sends it).
Prints requests/s, p50/p99 at N connections and p99 at a steady ~100
deliveries/s (10 connections on one wrk thread, each pausing 100 ms between
requests; spread over 4 wrk threads the same 10 reached only ~77/s), side by
side with the ratio, and checks that swapyard persisted exactly as many
events as it acknowledged. With --statuses swapyard also has a GitHub token
and posts its commit statuses (one per push at receipt) to a local stand-in
of GitHub's API answering 201 after --status-latency-ms (default 100, about
what api.github.com takes to create a status), as a service with statuses
on does: the sender's work then competes with the acknowledgements for the
one process. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUSH = ROOT / "tests" / "data" / "webhooks" / "github" / "push.json"
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


def wrk(
    url: str,
    body: Path,
    signature: str,
    *,
    connections: int,
    seconds: int,
    delay_ms: int = 0,
    threads: int | None = None,
    run: str,
) -> dict:
    env = {
        **os.environ,
        "BENCH_BODY": str(body),
        "BENCH_SIGNATURE": signature,
        "BENCH_DELAY_MS": str(delay_ms),
        "BENCH_RUN": run,
    }
    threads = threads or min(connections, 2 * (os.cpu_count() or 1))
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "webhooks.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["rate"] = result["requests"] / result["seconds"]
    result["acknowledged"] = result["requests"] - result["status_errors"]
    return result


class _StatusApi(BaseHTTPRequestHandler):
    """GitHub's create-status endpoint as a stand-in: counts the posts, answers 201."""

    posted = 0
    latency = 0.1

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.latency)
        type(self).posted += 1
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def status_api() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def settle(seconds: float = 2.0) -> None:
    """Pause between the load and the steady phase.

    wrk stops counting at its deadline with up to N requests in flight; the
    server still reads, persists and answers them (~1 ms each), so a steady
    phase started at once measures that drain (its first request per
    connection waits ~0.1-0.2 s), not the steady rate.
    """
    time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--statuses", action="store_true", help="post statuses to a stand-in")
    parser.add_argument("--status-latency-ms", type=float, default=100)
    args = parser.parse_args()
    _StatusApi.latency = args.status_latency_ms / 1000
    raw = PUSH.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        body = tmpdir / "body.json"
        body.write_bytes(raw)
        try:
            sy_port, wh_port = free_port(), free_port()
            config = tmpdir / "swapyard.yaml"
            settings = {"data_dir": str(tmpdir / "data"), "webhook_secret": SECRET, "workers": 0}
            if args.statuses:
                host, port = status_api().server_address[:2]
                settings |= {"github_api_url": f"http://{host}:{port}", "github_token": "bench"}
            config.write_text(json.dumps(settings))
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "service",
                        "serve",
                        "--config",
                        str(config),
                        "--port",
                        str(sy_port),
                        "--threads",
                        "32",
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            hooks = tmpdir / "hooks.json"
            hooks.write_text(
                json.dumps(
                    [
                        {
                            "id": "push",
                            "execute-command": "/bin/true",
                            "trigger-rule": {
                                "match": {
                                    "type": "payload-hmac-sha256",
                                    "secret": SECRET,
                                    "parameter": {
                                        "source": "header",
                                        "name": "X-Hub-Signature-256",
                                    },
                                }
                            },
                        }
                    ]
                )
            )
            procs.append(
                subprocess.Popen(
                    ["webhook", "-hooks", str(hooks), "-ip", "127.0.0.1", "-port", str(wh_port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_listening(sy_port)
            wait_listening(wh_port)
            urls = {
                "swapyard": f"http://127.0.0.1:{sy_port}/hooks/github",
                "adnanh/webhook": f"http://127.0.0.1:{wh_port}/hooks/push",
            }
            for url in urls.values():  # one warm-up delivery each
                req = urllib.request.Request(
                    url,
                    data=raw,
                    method="POST",
                    headers={
                        "X-GitHub-Event": "push",
                        "X-GitHub-Delivery": "warm-up",
                        "X-Hub-Signature-256": signature,
                        "Content-Type": "application/json",
                    },
                )
                urllib.request.urlopen(req, timeout=10).read()
            results = {}
            for name, url in urls.items():
                load = wrk(
                    url,
                    body,
                    signature,
                    connections=args.connections,
                    seconds=args.seconds,
                    run=f"{name}-load",
                )
                settle()
                steady = wrk(
                    url,
                    body,
                    signature,
                    connections=10,
                    seconds=args.seconds,
                    delay_ms=100,
                    threads=1,
                    run=f"{name}-steady",
                )
                results[name] = {"load": load, "steady": steady}
            with sqlite3.connect(tmpdir / "data" / "swapyard.db") as db:
                persisted = db.execute("select count(*) from events").fetchone()[0] - 1
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    sy, wh = results["swapyard"], results["adnanh/webhook"]
    acked = sy["load"]["acknowledged"] + sy["steady"]["acknowledged"]
    rows = [
        (f"ack/s at {args.connections} connections", "rate", "load", "{:.0f}"),
        (f"p50 ms at {args.connections} connections", "p50_ms", "load", "{:.1f}"),
        (f"p99 ms at {args.connections} connections", "p99_ms", "load", "{:.1f}"),
        ("steady rate (deliveries/s)", "rate", "steady", "{:.0f}"),
        ("p99 ms at the steady rate", "p99_ms", "steady", "{:.1f}"),
        ("non-2xx answers (load)", "status_errors", "load", "{}"),
        ("socket errors (load)", "socket_errors", "load", "{}"),
    ]
    print(f"{'':<34}{'swapyard':>12}{'adnanh/webhook':>16}{'ratio':>8}")
    for label, key, phase, fmt in rows:
        a, b = sy[phase][key], wh[phase][key]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{label:<34}{fmt.format(a):>12}{fmt.format(b):>16}{ratio:>8}")
    # wrk stops counting at its deadline; deliveries in flight then are persisted (and
    # answered) but not counted: persisted may exceed acknowledged, never fall short.
    print(
        f"swapyard acknowledged {acked} deliveries (as counted by wrk), persisted {persisted}: "
        + ("none lost" if persisted >= acked else "SOME LOST")
    )
    goals = {
        "p99 < 25 ms at ~100/s": sy["steady"]["p99_ms"] < 25,
        "p99 < 1 s at load": sy["load"]["p99_ms"] < 1000,
        "rate >= half of webhook's": sy["load"]["rate"] >= wh["load"]["rate"] / 2,
        "no acknowledged event lost": persisted >= acked,
    }
    if args.statuses:
        print(f"statuses on: the stand-in API took {_StatusApi.posted} posts during the run")
    for goal, met in goals.items():
        print(f"goal: {goal}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
