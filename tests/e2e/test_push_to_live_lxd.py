"""From a git push to a live LXD instance: the service with `provider: lxd`, for real.

The same flow as test_push_to_live, with the service's PROVIDER set to
`lxd`: a bare repository whose post-receive hook (service.quickstart.githook)
delivers signed pushes to the service on loopback (waitress, its worker,
DEPLOY on), which deploys the instance as a system container on the real
LXD daemon, booted from swapyard's base image, its images copied in from
this host's engine (the IMAGE_MAP's offline stand-ins), its data on an LXD
custom volume, behind the edge Caddy on this host. A second push swaps it;
the data written before is still there and the commit statuses, posted to a
loopback forge, say `success` for both commits.

Needs root, Docker, caddy, busybox-static and LXD with swapyard's pool
(`scripts/setup --test`); builds the base image when the daemon lacks it.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_push_to_live import (
    FULL_NAME,
    World,
    _free_port,
    _requirements,
    _stop_waitress,
    push_then_swap,
    seed_repo,
    service_settings,
)
from tests.service.forge_stub import ForgeStub

pytestmark = [pytest.mark.docker, pytest.mark.lxd, pytest.mark.slow]


def lxd_service_settings(state: Path, image: str) -> dict[str, Any]:
    """The lxd provider's settings for a test: the test pool, prefix and subnets, the image."""
    from tests.deploy.providers.lxd.fixtures import POOL, PREFIX, SUBNETS

    return {
        "provider": "lxd",
        "state_dir": str(state),
        "lxd_pool": POOL,
        "lxd_project_prefix": PREFIX,
        "lxd_subnets": SUBNETS,
        "lxd_image": image,
        "stop_timeout": 5,
        "ready_timeout": 180,
        "health_timeout": 60,
    }


@pytest.fixture
def lxd_world(tmp_path: Path, lxd_client: Any, base_image: str) -> Iterator[tuple[World, Any]]:
    """The service deploying a seeded repository on LXD, and a loopback forge for statuses."""
    _requirements()
    import waitress

    from deploy.providers.lxd.provider import LxdProvider
    from service.quickstart.githook import install
    from service.web.app import create_app
    from service.worker.threads import get_worker
    from tests.deploy.providers.lxd.fixtures import lxd_cleanup

    project = "e2x" + secrets.token_hex(3)
    bare, clone = seed_repo(tmp_path, project)
    port, edge, admin = _free_port(), f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    forge = ForgeStub().start()
    state = tmp_path / "state"
    settings = service_settings(
        tmp_path,
        port,
        edge,
        admin,
        bare,
        clone,
        github_token="forge-token",
        github_api_url=forge.url,
        status_backoff_seconds=0.1,
        **lxd_service_settings(state, base_image),
    )
    install(bare, f"http://127.0.0.1:{port}", tmp_path / "secret", FULL_NAME, sys.executable)
    app = create_app(settings)
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    worker = get_worker(app)
    worker.start()
    # the same state directory, hence the same owner tag: it sees the service's instances
    provider = LxdProvider(
        state,
        ex_lxd_pool=settings["lxd_pool"],
        ex_lxd_project_prefix=settings["lxd_project_prefix"],
        ex_lxd_subnets=settings["lxd_subnets"],
        ex_lxd_image=base_image,
        ex_edge_listen=(edge,),
        ex_edge_admin=admin,
    )
    try:
        world = World(
            f"http://127.0.0.1:{port}", edge, clone, project, provider, app, settings, tmp_path
        )
        yield world, forge
    finally:
        worker.stop()
        _stop_waitress(server, loop)
        forge.stop()
        lxd_cleanup(provider, project)


def _statuses(forge: ForgeStub, context: str, sha: str) -> list[str]:
    return [s["state"] for s in forge.statuses(context) if s["sha"] == sha]


def _wait_status(forge: ForgeStub, context: str, sha: str, state: str) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = _statuses(forge, context, sha)
        if seen and seen[-1] == state:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{context} on {sha[:12]}: statuses {seen}, expected {state} last")


def test_service_on_lxd_deploys_a_push_and_swaps_the_next_keeping_the_data(
    lxd_world: tuple[World, Any],
) -> None:
    world, forge = lxd_world
    first, second = push_then_swap(world, timeout=300)
    [live] = world.provider.list_instances()
    assert live.extra["type"] == "container" and live.extra["lxd_project"].endswith(world.project)
    assert live.endpoint == (live.extra["address"], 80)  # the edge proxies to its own address
    assert live.id not in first["summary"]  # a new container, not the first one changed
    context = f"swapyard/{world.project}/notes"
    for deployment in (first, second):
        seen = _wait_status(forge, context, deployment["sha"], "success")
        assert seen[0] == "pending", seen
