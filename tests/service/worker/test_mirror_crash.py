"""`swapyard serve` killed with SIGKILL mid-fetch deploys every acknowledged push once.

The repository is served by `git daemon` as a git:// URL, through a throttling
proxy that holds the stream at a chosen byte count of a large push (a few MiB
in a few dozen objects, the size git would have unpacked into loose objects
one by one); the whole service, its git children with it, is killed there and
started again on the same data directory.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from handlers.gitops.mirror import MirrorCache
from tests.service.conftest import (
    REPO_NAME,
    ZERO,
    ConfigRepo,
    Served,
    answers,
    free_port,
    make_settings,
    wait_for,
)
from tests.service.slowgit import GitDaemon, ThrottlingProxy
from tests.service.worker.test_worker import finished

RATE = 2 * 1024 * 1024  # bytes a second: a 3 MiB push takes over a second
FILES, FILE_BYTES = 12, 192 * 1024  # base64 of random bytes: 256 KiB of text, 12 blobs


@pytest.fixture
def slow_url(tmp_path: Path, config_repo: ConfigRepo) -> Iterator[tuple[str, ThrottlingProxy]]:
    daemon = GitDaemon(config_repo.bare.parent).start()
    proxy = ThrottlingProxy(("127.0.0.1", daemon.port), RATE).start()
    yield proxy.url(config_repo.bare.name), proxy
    proxy.close()
    daemon.stop()


def large_commit(
    repo: ConfigRepo, seed: int, into: str = "instances/blog/files/media", **also: str
) -> str:
    """A commit adding a few MiB of incompressible files under `into`, and the files
    `also` (path: text); not pushed."""
    rng = random.Random(seed)
    files = {
        f"{into}/part-{i:02}.txt": base64.b64encode(rng.randbytes(FILE_BYTES)).decode()
        for i in range(FILES)
    }
    return repo.commit(f"media {seed}", {**files, **also})


def pack_size(repo: ConfigRepo, after: str, before: str | None) -> int:
    """Bytes of the pack a fetch of `after` by a mirror holding `before` receives."""
    revs = f"{after}\n" + (f"^{before}\n" if before else "")
    out = subprocess.run(
        ["git", "pack-objects", "--revs", "--stdout"],
        cwd=repo.bare,
        input=revs.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return len(out)


class Service:
    """`swapyard serve` with `settings` (for `port`), killed and started again."""

    def __init__(self, tmp_path: Path, launch, port: int, settings: dict, repo: ConfigRepo):
        self.port = port
        self.config = tmp_path / "swapyard.yaml"
        self.config.write_text(yaml.safe_dump(settings))
        self.log = tmp_path / "service.log"
        self.launch = launch
        self.web = Served(f"http://127.0.0.1:{self.port}", None, repo)
        self.data = Path(settings["data_dir"])
        self.proc: subprocess.Popen | None = None

    def start(self, meanwhile: Callable[[], object] = lambda: None) -> None:
        """Start the service, doing `meanwhile` while it boots."""
        self.proc = self.launch(
            "serve", "--config", str(self.config), "--port", str(self.port), log=self.log
        )
        meanwhile()
        wait_for(lambda: answers(self.port), what=f"swapyard serve to listen ({self.log})")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # the service and its git children
        self.proc.wait(10)
        wait_for(lambda: not answers(self.port), what="the killed service to stop answering")


def planning_service(tmp_path: Path, forge, launch, url: str, repo: ConfigRepo) -> Service:
    """A service that plans (deploy off) the pushes of REPO_NAME, fetched from `url`."""
    port = free_port()
    extra = {"workers": 1, "lease_seconds": 3, "repositories": {REPO_NAME: url}}
    return Service(tmp_path, launch, port, make_settings(tmp_path, forge, port, **extra), repo)


def kill_mid_fetch(service: Service, proxy: ThrottlingProxy, after: int, push) -> int:
    """Acknowledge a push, let `after` bytes of the fetch through, kill the service there;
    returns the acknowledged event."""
    proxy.hold(after)
    answer = push()
    assert answer.status_code == 202
    assert proxy.held.wait(30), f"the fetch never reached byte {after} ({service.log})"
    service.kill()
    proxy.release()
    return int(answer.json()["event"])


def assert_deployed_once(
    service: Service,
    forge,
    event_id: int,
    sha: str,
    names: list[str],
    project: str = "production",
    timeout: float = 20.0,
) -> dict:
    """The event's deployments, one a named instance, each a success of `sha`, once."""
    event = finished(service.web, event_id, timeout)
    assert event["status"] == "dispatched", event
    deps = event["deployments"]
    assert sorted(d["instance"] for d in deps) == names
    assert {(d["status"], d["sha"]) for d in deps} == {("success", sha)}, deps
    history = service.web.api("/api/deployments?limit=500")
    for name in names:  # exactly once: one deployment of this commit per instance, ever
        assert [d["status"] for d in history if d["sha"] == sha and d["instance"] == name] == [
            "success"
        ]
    current = {i["instance"]: i["current"] for i in service.web.api("/api/instances")}
    assert all(current[name]["sha"] == sha for name in names), current
    for name in names:
        ctx = f"swapyard/{project}/{name}"
        states = wait_for(
            lambda ctx=ctx: (
                [s["state"] for s in forge.statuses(ctx) if s["sha"] == sha][-1:] == ["success"]
                and [s["state"] for s in forge.statuses(ctx) if s["sha"] == sha]
            ),
            what=f"the success status of {ctx}",
        )
        assert set(states) <= {"pending", "success"}, states  # never error, never failure
    mirror = MirrorCache(service.data / "mirrors").mirror(REPO_NAME)
    assert mirror.is_complete(sha)
    assert not mirror.staging.exists() and not mirror.aside.exists()
    return event


@pytest.mark.parametrize("fraction", [0.03, 0.5, 0.97])
def test_push_killed_mid_fetch_deploys_once_after_restart(
    tmp_path, config_repo, forge, launch, slow_url, fraction
):
    url, proxy = slow_url
    service = planning_service(tmp_path, forge, launch, url, config_repo)
    first = config_repo.sha()
    service.start(meanwhile=lambda: large_commit(config_repo, seed=1))
    event = service.web.push(ZERO, first).json()["event"]
    assert_deployed_once(service, forge, event, first, ["blog", "cloud", "www"])

    config_repo.push()
    sha = config_repo.sha()
    size = pack_size(config_repo, sha, first)
    assert size > 2 * 1024 * 1024
    event = kill_mid_fetch(
        service, proxy, int(size * fraction), lambda: service.web.push(first, sha)
    )
    service.start()
    assert_deployed_once(service, forge, event, sha, ["blog"])


def test_first_clone_killed_twice_deploys_once_after_restart(
    tmp_path, config_repo, forge, launch, slow_url
):
    url, proxy = slow_url
    service = planning_service(tmp_path, forge, launch, url, config_repo)
    sha = large_commit(config_repo, seed=2)
    config_repo.push()
    size = pack_size(config_repo, sha, None)
    service.start()
    event = kill_mid_fetch(service, proxy, size // 3, lambda: service.web.push(ZERO, sha))
    mirrors = service.data / "mirrors"
    assert not any(p.suffix == ".git" for p in mirrors.iterdir())  # no mirror, whole or not
    proxy.hold(size * 9 // 10)  # the retry is killed too, further on
    service.start()
    assert proxy.held.wait(30), f"the retried fetch never got that far ({service.log})"
    service.kill()
    proxy.release()
    service.start()
    assert_deployed_once(service, forge, event, sha, ["blog", "cloud", "www"])


@pytest.mark.docker
@pytest.mark.slow
def test_push_killed_mid_fetch_goes_live_once(tmp_path, forge, launch):
    """The same with DEPLOY on: the local provider (Docker engine, loop-mounted volume,
    edge Caddy) serves the pushed version, replaced once."""
    from tests.e2e.test_push_to_live import SITE_CONFIG, _requirements, local_deploy_settings

    _requirements()
    import docker
    import requests

    from deploy.providers.local.provider import LocalProvider
    from tests.deploy.conftest import cleanup

    project = "mk" + secrets.token_hex(3)
    repo = ConfigRepo.empty(tmp_path)
    first = repo.commit(
        "first",
        {
            "swapyard.yaml": f"projects:\n  {project}:\n    branches: [main]\n",
            "instances/site/apps.config": SITE_CONFIG,
            "instances/site/files/site/index.html": "<h1>v1</h1>\n",
        },
    )
    repo.push()
    daemon = GitDaemon(tmp_path).start()
    proxy = ThrottlingProxy(("127.0.0.1", daemon.port), RATE).start()
    port, edge, admin = free_port(), f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    (tmp_path / "secrets").mkdir()
    live = {
        **local_deploy_settings(tmp_path, edge, admin, repo.work),
        "workers": 1,
        "lease_seconds": 3,
        "repositories": {REPO_NAME: proxy.url(repo.bare.name)},
    }
    service = Service(tmp_path, launch, port, make_settings(tmp_path, forge, port, **live), repo)
    provider = LocalProvider(tmp_path / "state", ex_edge_listen=(edge,), ex_edge_admin=admin)

    def site() -> str:
        return requests.get(f"http://{edge}/", headers={"Host": "site.test"}, timeout=10).text

    try:
        v2 = {"instances/site/files/site/index.html": "<h1>v2</h1>\n"}
        service.start(meanwhile=lambda: large_commit(repo, seed=3, into="media", **v2))
        event = service.web.push(ZERO, first).json()["event"]
        assert_deployed_once(service, forge, event, first, ["site"], project, timeout=180)
        assert "v1" in site()

        repo.push()
        sha = repo.sha()
        size = pack_size(repo, sha, first)
        event = kill_mid_fetch(service, proxy, size // 2, lambda: service.web.push(first, sha))
        service.start()
        [dep] = assert_deployed_once(service, forge, event, sha, ["site"], project, timeout=180)[
            "deployments"
        ]
        assert dep["action"] == "replace", dep
        assert "v2" in site()
        [instance] = provider.list_instances()
        assert instance.id in dep["summary"]
        history = service.web.api(f"/api/deployments?instance={project}/site")
        assert [d["action"] for d in sorted(history, key=lambda d: d["id"])] == [
            "create",
            "replace",
        ]
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.terminate()
            service.proc.wait(30)
        cleanup(provider, docker.from_env(), project)
        proxy.close()
        daemon.stop()
