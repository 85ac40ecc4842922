"""From a git push to a live app: the whole flow, for real, on this machine.

A bare repository (the "forge") with swapyard's own post-receive hook
(service.quickstart.githook, the one the quick start installs) delivers signed push
webhooks to the service, served by waitress on loopback with its worker, DEPLOY
on and the local provider (real Docker engine, loop-mounted volume, edge
Caddy). Images are the product's offline ones (deploy.providers.local.images).

Needs root, a Docker engine, caddy and busybox-static; skipped otherwise.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECRET = "e2e-webhook-secret"
TOKEN = "e2e-api-token"
FULL_NAME = "e2e/config"

SITE_CONFIG = """\
volume:
  size: 64M
apps:
  - name: site
    catalog: static
    domains: [site.test]
    settings:
      root: site
"""
NOTES_CONFIG = (
    SITE_CONFIG
    + """\
  - name: notes
    image: busybox:1.36
    port: 8080
    domains: [notes.test]
    command:
      - sh
      - -c
      - >-
        mkdir -p /www/cgi-bin && cp /srv/notes/add /srv/notes/list /www/cgi-bin/ &&
        chmod +x /www/cgi-bin/add /www/cgi-bin/list && cp /srv/notes/index.html /www/ &&
        exec httpd -f -p 8080 -h /www
    data: [/var/lib/notes]
    files:
      notes/add: /srv/notes/add
      notes/list: /srv/notes/list
      notes/index.html: /srv/notes/index.html
"""
)

ADD = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
echo "$QUERY_STRING" >> /var/lib/notes/notes.txt
sync
echo ok
"""

LIST = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
cat /var/lib/notes/notes.txt 2>/dev/null
"""


def _git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "e2e",
        "GIT_AUTHOR_EMAIL": "e2e@example.org",
        "GIT_COMMITTER_NAME": "e2e",
        "GIT_COMMITTER_EMAIL": "e2e@example.org",
    }
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@dataclass
class World:
    url: str
    edge: str
    clone: Path
    project: str
    provider: Any
    app: Any
    settings: dict[str, Any]
    tmp: Path

    def push(self) -> tuple[str, str]:
        out = _git("push", "origin", "HEAD:refs/heads/main", cwd=self.clone)
        return _git("rev-parse", "HEAD", cwd=self.clone).strip(), out

    def commit(self, message: str, files: dict[str, str]) -> None:
        _write(self.clone, files)
        _git("add", "-A", cwd=self.clone)
        _git("commit", "-qm", message, cwd=self.clone)

    def get(self, host: str, path: str = "/") -> requests.Response:
        return requests.get(f"http://{self.edge}{path}", headers={"Host": host}, timeout=10)


def _requirements() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mount)")
    for tool in ("docker", "caddy", "git"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("no Docker engine running")


def seed_repo(tmp_path: Path, project: str) -> tuple[Path, Path]:
    """A bare repository (the forge) and a clone holding the notes instance, committed."""
    bare, clone = tmp_path / "forge" / "config.git", tmp_path / "config"
    bare.parent.mkdir()
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    _git("clone", "-q", str(bare), str(clone), cwd=tmp_path)
    _git("checkout", "-q", "-B", "main", cwd=clone)
    _write(
        clone,
        {
            "swapyard.yaml": f"projects:\n  {project}:\n    branches: [main]\n",
            "instances/notes/apps.config": NOTES_CONFIG,
            "instances/notes/files/site/index.html": "<h1>hello site v1</h1>\n",
            "instances/notes/files/notes/add": ADD,
            "instances/notes/files/notes/list": LIST,
            "instances/notes/files/notes/index.html": "notes\n",
        },
    )
    _git("add", "-A", cwd=clone)
    _git("commit", "-qm", "first config", cwd=clone)
    return bare, clone


def service_settings(
    tmp_path: Path, port: int, edge: str, admin: str, bare: Path, clone: Path, **extra: Any
) -> dict[str, Any]:
    """The service's settings for deploying the seeded repository for real (local provider);
    writes the webhook secret file the hook signs with and an empty secret store."""
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "secrets").mkdir()
    return {
        "data_dir": str(tmp_path / "data"),
        "webhook_secret": SECRET,
        "api_token": TOKEN,
        "public_url": f"http://127.0.0.1:{port}",
        "workers": 1,
        "poll_seconds": 0.1,
        "repositories": {FULL_NAME: str(bare)},
        "github_token": None,
        **local_deploy_settings(tmp_path, edge, admin, clone),
        **extra,
    }


def local_deploy_settings(tmp_path: Path, edge: str, admin: str, clone: Path) -> dict[str, Any]:
    """Settings that deploy for real on the local provider, with the offline images of the
    config repository checked out at `clone`; the secret store is `tmp_path/secrets`."""
    from deploy.providers.local.images import image_map_for_repository

    return {
        "deploy": True,
        "provider": "local",
        "state_dir": str(tmp_path / "state"),
        "secrets_dir": str(tmp_path / "secrets"),
        "edge_listen": edge,
        "edge_admin": admin,
        "image_map": image_map_for_repository(clone),
        "render_https": False,
        "ready_timeout": 60,
        "health_timeout": 30,
    }


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """A config repository with its hook, and the service deploying it for real.

    Indirect parametrization adds service settings (`{"lease_seconds": 3}`).
    """
    _requirements()
    import waitress

    from deploy.providers.local.provider import LocalProvider
    from service.quickstart.githook import install
    from service.web.app import create_app
    from service.worker.threads import get_worker

    project = "e2e" + secrets.token_hex(3)
    bare, clone = seed_repo(tmp_path, project)
    port, edge, admin = _free_port(), f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    state = tmp_path / "state"
    settings = service_settings(
        tmp_path, port, edge, admin, bare, clone, **getattr(request, "param", {})
    )
    install(bare, f"http://127.0.0.1:{port}", tmp_path / "secret", FULL_NAME, sys.executable)
    app = create_app(settings)
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    worker = get_worker(app)
    worker.start()
    provider = LocalProvider(state, ex_edge_listen=(edge,), ex_edge_admin=admin)
    try:
        yield World(
            f"http://127.0.0.1:{port}", edge, clone, project, provider, app, settings, tmp_path
        )
    finally:
        worker.stop()
        _stop_waitress(server, loop)
        import docker

        from tests.deploy.conftest import cleanup

        # instances through the provider, then anything a failed destroy left:
        # containers and networks of sy-<project>-*, loop devices, sealed
        # mountpoints, and the edge Caddy (by its pid file)
        cleanup(provider, docker.from_env(), project)


def _stop_waitress(server: Any, thread: threading.Thread) -> None:
    from waitress import wasyncore

    def close_all() -> None:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)

    server.trigger.pull_trigger(close_all)
    thread.join(10)


def push_then_swap(world: World, timeout: float = 120) -> tuple[dict[str, Any], dict[str, Any]]:
    """Push the notes instance (a create), write a note, push a change (a swap); the note and
    the change are there, the volume attached to the one instance left. Returns both
    deployments as the API shows them."""
    from service.quickstart.steps import wait_for_push

    sha, out = world.push()
    assert "delivered -> HTTP 202" in out, out  # the hook signed it; the service accepted it
    [first] = wait_for_push(world.url, TOKEN, sha, timeout=timeout)
    assert (first["status"], first["action"]) == ("success", "create"), first

    site = world.get("site.test")
    assert site.status_code == 200 and "hello site v1" in site.text
    assert world.get("notes.test", "/cgi-bin/add?written-before-the-swap").text.strip() == "ok"
    assert "written-before-the-swap" in world.get("notes.test", "/cgi-bin/list").text

    world.commit("change the site", {"instances/notes/files/site/index.html": "<h1>v2</h1>\n"})
    sha2, out = world.push()
    assert "delivered -> HTTP 202" in out, out
    [second] = wait_for_push(world.url, TOKEN, sha2, timeout=timeout)
    assert (second["status"], second["action"]) == ("success", "replace"), second

    assert "v2" in world.get("site.test").text
    notes = world.get("notes.test", "/cgi-bin/list")
    assert notes.status_code == 200 and "written-before-the-swap" in notes.text
    # the old instance is gone; the volume is attached once, to the new one
    [live] = world.provider.list_instances()
    assert live.id in second["summary"]
    [volume] = world.provider.list_volumes()
    assert volume.attached_to == live.id, volume
    assert (first["sha"], second["sha"]) == (sha, sha2)
    return first, second


def test_push_goes_live_and_a_second_push_swaps_with_the_data(world: World) -> None:
    from service.quickstart.steps import api

    started = time.monotonic()
    push_then_swap(world)
    key = f"{world.project}/notes"
    history = [
        d for d in api(world.url, TOKEN, "/deployments?limit=50") if d["instance"] == "notes"
    ]
    assert [d["action"] for d in sorted(history, key=lambda d: d["id"])] == ["create", "replace"]
    assert {f"{d['project']}/{d['instance']}" for d in history} == {key}
    assert time.monotonic() - started < 170


def _cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `swapyard` command line, on the same service config as the test's service."""
    import yaml

    config = world.tmp / "service.yaml"
    config.write_text(yaml.safe_dump(world.settings))
    return subprocess.run(
        [sys.executable, "-m", "service.cli.main", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def push_with_backups(world: World) -> tuple[str, str]:
    """Commit and push the notes instance with daily backups into a local restic repository."""
    (world.tmp / "secrets" / "restic_password").write_text("e2e-restic-password\n")
    repository = world.tmp / "restic"
    backup = f"backup:\n  enabled: true\n  repository: {repository}\n"
    backup += "  password: secret:restic_password\n"
    world.commit("with backups", {"instances/notes/apps.config": NOTES_CONFIG + backup})
    return world.push()


def test_a_deployed_instance_is_backed_up_and_restored(world: World) -> None:
    from service.quickstart.steps import api, wait_for_push

    sha, _ = push_with_backups(world)
    [done] = wait_for_push(world.url, TOKEN, sha, timeout=120)
    assert done["status"] == "success", done
    assert world.get("notes.test", "/cgi-bin/add?kept-by-restic").text.strip() == "ok"

    key = f"{world.project}/notes"
    overview = api(world.url, TOKEN, f"/instances/{key}/backups")
    assert overview["next_run"], overview  # scheduled by the deploy

    now = _cli(world, "backup", "now", key)
    assert now.returncode == 0, now.stderr
    assert "succeeded" in now.stdout and "snapshot" in now.stdout
    # what a client saw (page on to off) beside restic's own time, which it contains
    times = re.search(r"window +([0-9.]+) s +restic +([0-9.]+) s", now.stdout)
    assert times and float(times[1]) > float(times[2]), now.stdout
    assert world.get("notes.test", "/cgi-bin/list").status_code == 200  # apps came back

    listed = _cli(world, "backup", "list", key)
    assert listed.returncode == 0, listed.stderr
    assert "instance=notes" in listed.stdout and "snapshot " in listed.stdout

    world.get("notes.test", "/cgi-bin/add?written-after-the-backup")
    restored = _cli(world, "backup", "restore", key)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    notes = world.get("notes.test", "/cgi-bin/list").text
    assert "kept-by-restic" in notes and "written-after-the-backup" not in notes

    drill = _cli(world, "backup", "drill", key)
    assert drill.returncode == 0, drill.stderr + drill.stdout
    runs = api(world.url, TOKEN, f"/instances/{key}/backups")["runs"]
    assert {r["kind"] for r in runs} >= {"backup", "restore", "drill"}
    metrics = requests.get(f"{world.url}/metrics", timeout=10).text
    assert f'swapyard_backup_last_run_success{{instance="notes",project="{world.project}"}} 1' in (
        metrics
    )
