"""Fixtures for deploy tests: the real Docker engine, a local test image, a local provider.

Everything a test creates (containers, mounts, loop devices, the edge Caddy)
is removed in teardown, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.providers.commands import run
from deploy.providers.local.provider import LocalProvider
from deploy.providers.local.volumes import loop_devices_of, mountpoints_of
from tests.deploy.fixtures import build_image, caddy_available, make_ignition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def docker_client() -> Any:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine: {exc}")
    return client


@pytest.fixture(scope="session")
def test_image(docker_client: Any) -> str:
    """The busybox+caddy image, built once and cached by a content-hash tag."""
    if not caddy_available():
        pytest.skip("caddy is not installed (apt-get install caddy)")
    return build_image(docker_client)


@pytest.fixture
def project() -> str:
    """A unique project name per test, so leftovers never collide."""
    return "t" + secrets.token_hex(3)


def cleanup(provider: LocalProvider, docker_client: Any, project: str) -> None:
    """Remove every container, mount, loop device and the edge this test created."""
    for inst in provider.list_instances():
        if inst.id.startswith(f"sy-{project}-"):
            with contextlib.suppress(Exception):
                provider.destroy_instance(inst)
    label = "com.docker.compose.project"
    for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": label}):
        if c.labels.get(label, "").startswith(f"sy-{project}-"):
            c.remove(force=True)
    for net in docker_client.networks.list():
        if net.name.startswith(f"sy-{project}-"):
            net.remove()
    for vid in provider.volumes.ids():
        image = provider.volumes.image(vid)
        if provider.volumes.use_loop:
            for dev in loop_devices_of(image):
                for point in mountpoints_of(dev):
                    run(["umount", "-l", str(point)], check=False)
                run(["losetup", "-d", dev], check=False)
    for point in provider.instances_dir.glob("*/data"):
        provider.volumes.release_mountpoint(point)  # so tmp_path can be removed
    provider.ex_stop_edge()


@pytest.fixture
def provider(
    tmp_path: Path, docker_client: Any, test_image: str, project: str
) -> Iterator[LocalProvider]:
    if os.geteuid() != 0:
        pytest.skip("the local provider's loop devices and mounts need root")
    p = LocalProvider(
        tmp_path / "state",
        ex_edge_listen=(f"127.0.0.1:{free_port()}",),
        ex_edge_admin=f"127.0.0.1:{free_port()}",
        ex_stop_timeout=5,
    )
    try:
        yield p
    finally:
        cleanup(p, docker_client, project)


@pytest.fixture
def ignition_v1(test_image: str) -> bytes:
    return make_ignition(test_image, "v1")


@pytest.fixture
def ignition_v2(test_image: str) -> bytes:
    return make_ignition(test_image, "v2")


@pytest.fixture
def ignition_broken(test_image: str) -> bytes:
    return make_ignition(test_image, "v3", healthy=False)


# The lxd provider's fixtures, for its own tests and the swap scenarios on it.
from tests.deploy.providers.lxd.fixtures import base_image, lxd_client, lxd_provider  # noqa: E402,F401
