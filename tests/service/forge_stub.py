"""A loopback stand-in for the forge's REST API that records what PyGithub sends."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]
    authorization: str | None


@dataclass
class ForgeStub:
    fail_first: int = 0  # answer 503 to this many status posts first
    calls: list[Call] = field(default_factory=list)
    failures: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def statuses(self, context: str | None = None) -> list[dict[str, Any]]:
        return [
            {**c.body, "sha": c.path.rsplit("/", 1)[-1], "path": c.path}
            for c in list(self.calls)
            if c.method == "POST"
            and "/statuses/" in c.path
            and (context is None or c.body.get("context") == context)
        ]

    def start(self) -> ForgeStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if "/statuses/" in self.path and stub.failures < stub.fail_first:
                    stub.failures += 1
                    self._answer(503, {"message": "forge is down (stand-in)"})
                    return
                stub.calls.append(Call("POST", self.path, body, self.headers.get("Authorization")))
                self._answer(201, {"id": len(stub.calls), "url": self.path, **body})

            def do_GET(self) -> None:
                stub.calls.append(Call("GET", self.path, {}, self.headers.get("Authorization")))
                self._answer(200, {"url": self.path})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
