"""The stand-in for an instance's front proxy: a loopback HTTP server per memory instance.

The swap engine checks apps over HTTP through an instance's endpoint
(`deploy.spec.check_apps`, and behind the maintenance page with a health
pass), so a driver that only kept flags would skip the very check a rollback
depends on. This server answers as the rendered Caddy front proxy does, in
this order: the maintenance page (503 with `Retry-After`) unless the request
carries the instance's health pass (`X-Swapyard-Health`, 32 hex digits);
404 for a Host no app serves; 502 for a writer app while the writers are
stopped; then the status a test set for the app (200 by default).

Apps are declared as `MemoryApp`s (name, domains, writer or not); with none
declared every Host is an app named after it. A writer app is a tiny note
store on the attached volume: `GET …/add?text` appends a line to
`<volume>/<app>/notes.txt`, `GET …/list` returns the lines, so tests show
data surviving a swap. Other apps answer `<app> on <instance id>`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from renderers.layout import HEALTH_PASS_HEADER, HEALTH_PASS_TOKEN

NOTES = "notes.txt"  # a writer app's lines, under <volume>/<app>/


@dataclass(frozen=True)
class MemoryApp:
    """An app behind the front proxy: answered for `domains`, a writer or not."""

    name: str
    domains: tuple[str, ...]
    writer: bool = False


class FrontProxy:
    """One instance's front proxy: its state (page, pass, writers, statuses) and its server.

    `lock` is the driver's: the state changes under it and is read under it.
    `volume` returns the directory of the volume attached to the instance, or None.
    """

    def __init__(
        self,
        instance_id: str,
        apps: tuple[MemoryApp, ...],
        statuses: dict[str, int],
        retry_after: int,
        lock: threading.RLock,
        volume: Callable[[], Path | None],
    ):
        self.instance_id = instance_id
        self.apps = apps
        self.statuses = statuses
        self.retry_after = retry_after
        self.maintenance = False
        self.health_pass: str | None = None
        self.writers = False
        self._lock = lock
        self._volume = volume
        self._server = _serve(self)

    @property
    def endpoint(self) -> tuple[str, int]:
        """Where the proxy answers: (loopback address, port)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop answering and close the port."""
        self._server.shutdown()
        self._server.server_close()

    def app_for(self, host: str) -> MemoryApp | None:
        """The app serving `host` (a port after it ignored), or None."""
        domain = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if not self.apps:
            return MemoryApp(domain, (domain,))
        return next((a for a in self.apps if domain in a.domains), None)

    def answer(self, host: str, target: str, token: str) -> tuple[int, str]:
        """The (status, body) of `GET target` with `Host: host` and health pass `token`."""
        with self._lock:
            passed = bool(
                self.health_pass
                and re.fullmatch(HEALTH_PASS_TOKEN, token)
                and token == self.health_pass
            )
            if self.maintenance and not passed:
                return 503, "down for maintenance\n"
            app = self.app_for(host)
            if app is None:
                return 404, f"no app answers {host}\n"
            if app.writer and not self.writers:
                return 502, f"{app.name} is not running\n"
            status = self.statuses.get(app.name, 200)
            if status != 200 or not app.writer:
                return status, f"{app.name} on {self.instance_id}\n"
            volume = self._volume()
            if volume is None:
                return 502, f"{app.name} has no volume\n"
            return 200, _notes(volume / app.name, target)


def _notes(folder: Path, target: str) -> str:
    """A writer app: `…/add?text` appends a line, `…/list` returns every line."""
    url = urlsplit(target)
    lines = folder / NOTES
    if url.path.endswith("/add"):
        folder.mkdir(parents=True, exist_ok=True)
        with lines.open("a") as f:
            f.write(url.query + "\n")
        return "ok\n"
    if url.path.endswith("/list"):
        return lines.read_text() if lines.exists() else ""
    return f"{folder.name}\n"


def _serve(proxy: FrontProxy) -> ThreadingHTTPServer:
    """Start the proxy's server on a free loopback port, in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            """Answer with the proxy's (status, body); a 503 carries `Retry-After`."""
            status, body = proxy.answer(
                self.headers.get("Host", ""),
                self.path,
                self.headers.get(HEALTH_PASS_HEADER, ""),
            )
            data = body.encode()
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", str(proxy.retry_after))
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read answers, not access logs."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.name = f"memory-{proxy.instance_id}"
    thread.start()
    return server
