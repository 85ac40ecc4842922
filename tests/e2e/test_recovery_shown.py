"""A swap cut short by SIGKILL: after the restart the user sees the recovery where they
review deployments (history, API, page, commit status), not only in the log.

The real `swapyard serve` runs as its own process with the local provider; the
config repository delivers through swapyard's post-receive hook; commit statuses go
to the forge stand-in. The service is killed while the old instance's writers are
being stopped, so recovery rolls the swap back and the deployment runs again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.e2e.test_push_to_live import (
    FULL_NAME,
    TOKEN,
    _free_port,
    _git,
    _requirements,
    _write,
    seed_repo,
    service_settings,
)
from tests.service.forge_stub import ForgeStub

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _wait(predicate: Any, what: str, timeout: float = 120, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Service:
    """`swapyard serve` as a process of its own, started and SIGKILLed like in production."""

    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log = config, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWAPYARD_")}
        argv = ["serve", "--config", str(self.config), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", *argv],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(lambda: _answers(self.url), f"swapyard serve to answer ({self.log})", 60)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def api(self, path: str) -> Any:
        answer = requests.get(
            f"{self.url}/api{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        answer.raise_for_status()
        return answer.json()

    def deployment_of(self, sha: str) -> dict[str, Any] | None:
        return next((d for d in self.api("/deployments?limit=50") if d["sha"] == sha), None)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[dict[str, Any]]:
    _requirements()
    import docker

    from deploy.providers.local.provider import LocalProvider
    from service.quickstart.githook import install
    from tests.deploy.conftest import cleanup

    project = "rec" + os.urandom(3).hex()
    bare, clone = seed_repo(tmp_path, project)
    forge = ForgeStub().start()
    port, edge, admin = _free_port(), f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    state = tmp_path / "state"
    settings = service_settings(
        tmp_path,
        port,
        edge,
        admin,
        bare,
        clone,
        lease_seconds=3,  # the interrupted deployment is claimed again soon after
        github_token="forge-token",
        github_api_url=forge.url,
        status_backoff_seconds=0.1,
    )
    config = tmp_path / "service.yaml"
    config.write_text(yaml.safe_dump(settings))
    install(bare, f"http://127.0.0.1:{port}", tmp_path / "secret", FULL_NAME, sys.executable)
    service = Service(config, port, tmp_path / "service.log")
    provider = LocalProvider(state, ex_edge_listen=(edge,), ex_edge_admin=admin)
    try:
        yield {
            "service": service,
            "clone": clone,
            "edge": edge,
            "forge": forge,
            "project": project,
            "db": tmp_path / "data" / "swapyard.db",
            "config": config,
        }
    finally:
        service.stop()
        forge.stop()
        cleanup(provider, docker.from_env(), project)


def _push(clone: Path) -> str:
    out = _git("push", "origin", "HEAD:refs/heads/main", cwd=clone)
    assert "delivered -> HTTP 202" in out, out
    return _git("rev-parse", "HEAD", cwd=clone).strip()


def _swap_step_started(db: Path, step: str) -> bool:
    with sqlite3.connect(db, timeout=5) as conn:
        row = conn.execute(
            "SELECT 1 FROM deploy_steps JOIN deploy_swaps ON deploy_swaps.id = swap_id"
            " WHERE deploy_swaps.kind = 'replace' AND step = ?",
            (step,),
        ).fetchone()
    return row is not None


def test_a_swap_killed_midway_shows_its_recovery_and_rollback(setup: dict[str, Any]) -> None:
    service, clone, forge = setup["service"], setup["clone"], setup["forge"]
    key, edge = f"{setup['project']}/notes", setup["edge"]
    service.start()
    first = _push(clone)
    created = _wait(
        lambda: (d := service.deployment_of(first)) and d["finished_at"] and d, "the first deploy"
    )
    assert created["status"] == "success", created
    add = requests.get(f"http://{edge}/cgi-bin/add?before-the-kill", headers={"Host": "notes.test"})
    assert add.text.strip() == "ok"

    _write(clone, {"instances/notes/files/site/index.html": "<h1>v2</h1>\n"})
    _git("commit", "-qam", "v2", cwd=clone)
    second = _push(clone)
    _wait(lambda: _swap_step_started(setup["db"], "stop_writers_old"), "the swap to stop writers")
    service.kill()  # mid-swap: the old instance in maintenance, its writers stopping

    service.start()
    done = _wait(
        lambda: (d := service.deployment_of(second)) and d["finished_at"] and d,
        "the interrupted deployment to run again and finish",
        timeout=180,
    )
    assert (done["status"], done["action"]) == ("success", "replace"), done
    full = service.api(f"/deployments/{done['id']}")
    [recovery] = full["recoveries"]
    assert "the worker stopped after" in recovery, recovery
    assert f"rolled back to {first[:12]}" in recovery, recovery
    names = [s["name"] for s in full["steps"]]
    assert "rollback:attach_old" in names and names.index("recovered") > names.index(
        "rollback:attach_old"
    ), names
    assert "after a restart" in done["summary"], done

    history = subprocess.run(
        [sys.executable, "-m", "service.cli.main", "history", "--config", str(setup["config"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert history.returncode == 0, history.stderr
    [line] = [ln for ln in history.stdout.splitlines() if second[:12] in ln]
    assert key in line and "success" in line and "after a restart" in line, line

    page = requests.Session()
    page.post(f"{service.url}/login", data={"token": TOKEN}, timeout=10)
    html = page.get(f"{service.url}/deployments/{done['id']}", timeout=10).text
    assert "Recovered after a restart" in html and f"rolled back to {first[:12]}" in html

    mine = _wait(
        lambda: (
            [
                s
                for s in forge.statuses(f"swapyard/{key}")
                if s["sha"] == second and s["state"] != "pending"
            ]
            and [s for s in forge.statuses(f"swapyard/{key}") if s["sha"] == second]
        ),
        "the final status of the interrupted commit",
    )
    # the `pending` "recovered after a restart" may be replaced before it is sent (the
    # outbox sends only the newest status of a context); the final one says it
    assert mine[-1]["state"] == "success"
    assert mine[-1]["description"].startswith("retried after a restart"), mine[-1]

    # the rollback and the retried swap kept the data, and v2 is live
    notes = requests.get(f"http://{edge}/cgi-bin/list", headers={"Host": "notes.test"})
    assert "before-the-kill" in notes.text
    site = requests.get(f"http://{edge}/", headers={"Host": "site.test"}, timeout=10)
    assert "v2" in site.text
