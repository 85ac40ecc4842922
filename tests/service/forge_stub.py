"""A loopback stand-in for the forge's REST API that records what the status clients send.

GitHub and Gitea calls (PyGithub) are accepted as they come. GitLab calls
(`/api/v4/projects/...`) are answered the way GitLab does: the `PRIVATE-TOKEN`
is checked, and each (project, commit, name) status moves through a state
machine that refuses to enter the state it is already in with a 400.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GITLAB_TOKEN = "gitlab-token"
GITLAB_EVENTS = {  # GitLab state -> the state machine event that enters it
    "pending": "enqueue",
    "running": "run",
    "success": "succeed",
    "failed": "drop",
    "canceled": "cancel",
}


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]
    authorization: str | None
    private_token: str | None = None
    code: int = 201  # what the stand-in answered


@dataclass
class ForgeStub:
    fail_first: int = 0  # answer `failure` (503 by default) to this many status posts first
    failure: tuple[int, dict[str, Any]] = (503, {"message": "forge is down (stand-in)"})
    lose_answers: int = 0  # GitLab: apply this many status posts, then answer 502 anyway
    calls: list[Call] = field(default_factory=list)
    failures: int = 0
    gitlab_states: dict[tuple[str, str], str] = field(default_factory=dict)  # (path, name)
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
            and c.code < 300
            and (context is None or c.body.get("context", c.body.get("name")) == context)
        ]

    def gitlab(self, path: str, body: dict[str, Any], token: str | None) -> tuple[int, dict]:
        """GitLab's answer to `POST /projects/:id/statuses/:sha`, and its effect."""
        if token != GITLAB_TOKEN:
            return 401, {"message": "401 Unauthorized"}
        wanted, name = body.get("state"), body.get("name") or "default"
        if wanted not in GITLAB_EVENTS:
            return 400, {"error": "state does not have a valid value"}
        current = self.gitlab_states.get((path, name))
        if current == wanted:
            event = GITLAB_EVENTS[wanted]
            return 400, {
                "message": f"Cannot transition status via :{event} from :{current} "
                f'(Reason(s): Status cannot transition via "{event}")'
            }
        self.gitlab_states[(path, name)] = wanted
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return 502, {"message": "answer lost on the way back (stand-in)"}
        sha = path.rsplit("/", 1)[-1]
        return 201, {"id": len(self.calls) + 1, "sha": sha, "status": wanted, **body}

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
                    self._answer(*stub.failure)
                    return
                if self.path.startswith("/api/v4/projects/"):
                    token = self.headers.get("PRIVATE-TOKEN")
                    code, data = stub.gitlab(self.path, body, token)
                    stub.calls.append(Call("POST", self.path, body, None, token, code))
                    self._answer(code, data)
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
