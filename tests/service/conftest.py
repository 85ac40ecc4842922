"""Fixtures: a real config repository (bare + clone), the forge stand-in, the served app."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.service import deliveries
from tests.service.forge_stub import GITLAB_TOKEN, ForgeStub

ROOT = Path(__file__).resolve().parents[2]
SECRET = "It's a Secret to Everybody"
TOKEN = "api-token-for-tests"
REPO_NAME = "owner/config"
ZERO = "0" * 40


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class ConfigRepo:
    bare: Path
    work: Path

    def sha(self, ref: str = "HEAD") -> str:
        return git("rev-parse", ref, cwd=self.work)

    def commit(self, message: str, files: dict[str, str | None]) -> str:
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                git("rm", "-rq", rel, cwd=self.work)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            git("add", rel, cwd=self.work)
        git("commit", "-qm", message, cwd=self.work)
        return self.sha()

    def push(self, branch: str = "main", force: bool = False) -> None:
        git(
            "push",
            "-q",
            *(["--force"] if force else []),
            "origin",
            f"HEAD:refs/heads/{branch}",
            cwd=self.work,
        )

    def read(self, rel: str) -> str:
        return (self.work / rel).read_text()

    @classmethod
    def empty(cls, root: Path) -> ConfigRepo:
        """A bare repository `root`/origin.git with a clone of it on branch main."""
        bare, work = root / "origin.git", root / "work"
        git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
        git("clone", "-q", str(bare), str(work), cwd=root)
        git("checkout", "-q", "-b", "main", cwd=work)
        return cls(bare, work)


@pytest.fixture
def config_repo(tmp_path: Path) -> ConfigRepo:
    repo = ConfigRepo.empty(tmp_path)
    shutil.copytree(ROOT / "examples" / "config-repo", repo.work, dirs_exist_ok=True)
    git("add", "-A", cwd=repo.work)
    git("commit", "-qm", "initial config", cwd=repo.work)
    repo.push("main")
    return repo


@pytest.fixture
def launch() -> Iterator:
    """Start `python -m service ...` in its own process group (killable whole); stopped
    at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, log: Path) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPYARD_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to kill it whole
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def forge() -> Iterator[ForgeStub]:
    stub = ForgeStub().start()
    yield stub
    stub.stop()


def answers(port: int) -> bool:
    """Whether a swapyard service on 127.0.0.1:`port` answers its health check."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.ConnectionError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str
    app: Any
    repo: ConfigRepo | None = None
    secret: str = SECRET
    extra: dict[str, Any] = field(default_factory=dict)

    def api(self, path: str) -> Any:
        r = requests.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        r.raise_for_status()
        return r.json()

    def hook(
        self,
        sender: str,
        event: str,
        body: dict[str, Any] | bytes,
        *,
        delivery: str | None = None,
        sign: bool = True,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST `body` as `sender` (github, gitea, forgejo, gitlab) does, with all its headers."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {
            **deliveries.headers(
                sender, event, raw, self.secret if sign else None, delivery or str(uuid.uuid4())
            ),
            **(headers or {}),
        }
        url = f"{self.url}/hooks/{deliveries.endpoint(sender)}"
        return requests.post(url, data=raw, headers=sent, timeout=10)

    def push(self, before: str, after: str, branch: str = "main", **kw: Any) -> requests.Response:
        assert self.repo is not None
        return self.hook("github", "push", push_body(self.repo, before, after, branch), **kw)


def outbox_drained(served: Served) -> None:
    """Wait until no commit status is left to send (each one sent or given up)."""
    wait_for(
        lambda: (
            'swapyard_queue_depth{queue="statuses"} 0'
            in requests.get(f"{served.url}/metrics", timeout=5).text
        ),
        what="the status outbox to drain (each status sent or given up)",
    )


def push_body(
    repo: ConfigRepo,
    before: str,
    after: str,
    branch: str = "main",
    template: str = "github/push.json",
) -> dict[str, Any]:
    """A GitHub push body (tests/data/webhooks), adapted to the test repository and commits."""
    body = deliveries.body(template)
    body.update(
        ref=f"refs/heads/{branch}",
        before=before,
        after=after,
        created=before == ZERO,
        deleted=after == ZERO,
    )
    body["repository"].update(full_name=REPO_NAME, clone_url=str(repo.bare))
    if body.get("head_commit"):
        body["head_commit"]["id"] = after
    for commit in body.get("commits") or []:
        commit["id"] = after
    return body


def gitlab_push_body(repo: ConfigRepo, before: str, after: str, branch: str = "main") -> dict:
    """A GitLab push body (tests/data/webhooks), adapted to the test repository and commits."""
    body = deliveries.body("gitlab/push.json")
    body.update(ref=f"refs/heads/{branch}", before=before, after=after, checkout_sha=after)
    body["project"].update(path_with_namespace=REPO_NAME, git_http_url=str(repo.bare))
    body["repository"].update(git_http_url=str(repo.bare))
    body["commits"][-1]["id"] = after
    return body


def make_settings(tmp_path: Path, forge: ForgeStub | None, port: int, **extra: Any) -> dict:
    return {
        "data_dir": str(tmp_path / "data"),
        "webhook_secret": SECRET,
        "api_token": TOKEN,
        "public_url": f"http://127.0.0.1:{port}",
        "github_api_url": forge.url if forge else "http://127.0.0.1:9",
        "github_token": "forge-token",
        "gitea_api_url": forge.url if forge else None,
        "gitea_token": "forge-token",
        "gitlab_api_url": forge.url + "/api/v4" if forge else "http://127.0.0.1:9",
        "gitlab_token": GITLAB_TOKEN,
        "workers": 2,
        "poll_seconds": 0.05,
        "lease_seconds": 10,
        "status_backoff_seconds": 0.1,
        "status_backoff_max_seconds": 0.5,
        "status_timeout_seconds": 5,
        "max_body_bytes": 64 * 1024,
        "deploy": False,  # plan only: tests/e2e deploy for real
        **extra,
    }


@pytest.fixture
def serve(tmp_path: Path, forge: ForgeStub) -> Iterator[Callable[..., Served]]:
    """Start the app under waitress on loopback (and its worker unless workers=0)."""
    import waitress

    from service.web.app import create_app
    from service.worker.threads import get_worker

    started: list[tuple[Any, Any]] = []

    def start(repo: ConfigRepo | None = None, **extra: Any) -> Served:
        port = free_port()
        app = create_app(make_settings(tmp_path, forge, port, **extra))
        server = waitress.create_server(app, host="127.0.0.1", port=port, threads=8)
        loop = threading.Thread(target=server.run, daemon=True)
        loop.start()
        worker = get_worker(app)
        worker.start()
        started.append((server, loop, worker))
        return Served(f"http://127.0.0.1:{port}", app, repo)

    yield start
    for server, loop, worker in started:
        worker.stop()
        stop_waitress(server, loop)


def stop_waitress(server: Any, thread: threading.Thread) -> None:
    """Close a waitress server from inside its own loop thread, then wait for the loop to end."""
    from waitress import wasyncore

    def close_all() -> None:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)  # the loop ends once its map is empty

    server.trigger.pull_trigger(close_all)
    thread.join(10)
    assert not thread.is_alive(), "waitress did not stop"
