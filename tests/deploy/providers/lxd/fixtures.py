"""Fixtures for the lxd provider: the real LXD daemon, swapyard's base image, a provider per test.

tests/deploy/conftest.py makes them available to every deploy test.

The daemon and its storage pool come from `scripts/setup --lxd` (`--test`
includes it); the base image is built once per daemon (its alias is derived
from its content, so later runs reuse it). Each test gets its own swapyard
project, hence its own LXD project and bridge, and a provider whose state
directory (so whose owner tag) is its own; teardown removes every instance,
volume, project and bridge the test made, even when it fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import free_port

POOL = os.environ.get("SWAPYARD_LXD_POOL", "swapyard")
SWEEP_PREFIX = "swapyard-test-"
# Per test run: two runs sharing the daemon (a developer's and CI's) use different LXD
# projects even where their swapyard projects have the same name (the example repository's).
PREFIX = f"{SWEEP_PREFIX}{secrets.token_hex(2)}-"
SUBNETS = "10.214.0.0/16"  # apart from the default pool's 10.213/16, for a user's own projects


@pytest.fixture(scope="session")
def lxd_client() -> Any:
    from deploy.providers.lxd.api import Endpoint, LxdClient, LxdError

    try:
        client = LxdClient(Endpoint.local())
        client.server()
    except LxdError as exc:
        pytest.skip(f"no LXD daemon ({exc}); scripts/setup --lxd starts one")
    with contextlib.suppress(LxdError):
        client.get(f"/1.0/storage-pools/{POOL}")
        sweep_leftovers(client)
        return client
    pytest.skip(f"LXD has no storage pool {POOL!r}; scripts/setup --lxd creates it")


def sweep_leftovers(client: Any) -> None:
    """Remove what killed test runs left: test projects whose state directory is gone."""
    from deploy.providers.lxd.api import LxdError
    from deploy.providers.lxd.site import STATE_KEY, network_name

    default = client.in_project("default")
    for project in default.get("/1.0/projects", params={"recursion": "1"}, project=False):
        name, config = project["name"], project.get("config") or {}
        if not name.startswith(SWEEP_PREFIX) or Path(config.get(STATE_KEY, "/")).exists():
            continue
        inside = client.in_project(name)
        with contextlib.suppress(LxdError):
            for url in inside.get("/1.0/instances"):
                inst = url.split("?")[0]
                with contextlib.suppress(LxdError):
                    inside.request("PUT", f"{inst}/state", body={"action": "stop", "force": True})
                inside.request("DELETE", inst)
            for url in inside.get(f"/1.0/storage-pools/{POOL}/volumes/custom"):
                inside.request("DELETE", url.split("?")[0])
            inside.request("PUT", "/1.0/profiles/default", body={"config": {}, "devices": {}})
            default.request("DELETE", f"/1.0/projects/{name}", project=False)
            default.request("DELETE", f"/1.0/networks/{network_name(name)}", project=False)


@pytest.fixture(scope="session")
def base_image(lxd_client: Any) -> str:
    """swapyard's base image on this daemon (built now when missing, about a minute)."""
    from deploy.providers.lxd.image import ensure_base_image

    return ensure_base_image(lxd_client).alias


def lxd_options(state_dir: Path) -> dict[str, Any]:
    """The provider's keyword arguments for a test (free edge ports, the test subnet pool)."""
    return {
        "ex_lxd_pool": POOL,
        "ex_lxd_project_prefix": PREFIX,
        "ex_lxd_subnets": SUBNETS,
        "ex_edge_listen": (f"127.0.0.1:{free_port()}",),
        "ex_edge_admin": f"127.0.0.1:{free_port()}",
        "ex_stop_timeout": 5,
    }


def worker_options(provider: Any) -> dict[str, Any]:
    """The JSON-ready constructor keywords of a second provider on `provider`'s state, edge
    and image, for a worker subprocess (lists stand for tuples)."""
    options = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in lxd_options(provider.state_dir).items()
    }
    return options | {
        "ex_edge_listen": list(provider.edge.listen),
        "ex_edge_admin": provider.edge.admin,
        "ex_lxd_image": provider.image,
    }


def lxd_cleanup(provider: Any, project: str) -> None:
    """Remove what a test made: instances, volumes, the LXD project and bridge, the edge."""
    for inst in provider.list_instances():
        with contextlib.suppress(Exception):
            provider.destroy_instance(inst)
    for vol in provider.list_volumes():
        with contextlib.suppress(Exception):
            provider.destroy_volume(vol)
    for lxd_project in provider.sites.projects():
        name = lxd_project["config"].get("user.swapyard.project", "")
        with contextlib.suppress(Exception):
            provider.ex_remove_project(name)
    with contextlib.suppress(Exception):
        provider.ex_remove_project(project)
    provider.ex_stop_edge()


@pytest.fixture
def lxd_provider(
    tmp_path: Path, lxd_client: Any, base_image: str, test_image: str, project: str
) -> Iterator[Any]:
    from deploy.providers.lxd.provider import LxdProvider

    p = LxdProvider(tmp_path / "state", ex_lxd_image=base_image, **lxd_options(tmp_path / "state"))
    try:
        yield p
    finally:
        lxd_cleanup(p, project)
