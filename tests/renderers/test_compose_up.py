"""The rendered project really runs: docker compose up, Caddy in front, maintenance flag.

Needs a Docker engine; no registry: the test builds one local image holding
Debian's busybox and caddy binaries (with caddy's libraries), and maps the
rendered images to it through `RenderOptions.image_map`. An override file
publishes Caddy on a random loopback port instead of 80/443, so the test
never collides with anything else on the machine.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from renderers import RenderOptions, render_instance
from schemas.model import App, DataMount, FileMount, Instance, SecretRef, Service
from tests.renderers.helpers import example_instances
from tests.renderers.test_compose import _docker_compose

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=300, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def local_image() -> str:
    """An image like the official caddy one (CMD, XDG dirs), with busybox for the app."""
    if shutil.which("docker") is None or _run("docker", "info").returncode != 0:
        pytest.skip("no Docker engine; install docker.io and start dockerd")
    for binary in ("/bin/busybox", "/usr/bin/caddy"):
        if not Path(binary).exists():
            pytest.skip(f"{binary} is missing; apt-get install busybox-static caddy")
    from deploy.providers.local.images import caddy_image

    return caddy_image()


def _instance() -> Instance:
    base = next(i for i in example_instances() if i.name == "www")
    echo = Service(
        name="echo",
        image="busybox:1.36",
        command=("httpd", "-f", "-p", "8080", "-h", "/srv/www"),
        environment=(("GREETING", "hello"), ("TOKEN", SecretRef("echo_token"))),
        data=(DataMount("echo/state", "/var/lib/echo"),),
        files=(FileMount("echo/index.html", "/srv/www/index.html"),),
        writer=True,
        exposed=True,
        port=8080,
        depends_on=("echo-db",),
    )
    backend = Service(
        name="echo-db",
        image="busybox:1.36",
        command=("httpd", "-f", "-p", "8081", "-h", "/srv/www"),
        files=(FileMount("echo/index.html", "/srv/www/index.html"),),
    )
    apps = (
        App(name="site", kind="static", domains=("example.test",), static_root="site"),
        App(
            name="echo",
            kind="custom",
            domains=("echo.example.test",),
            services=(echo, backend),
            upstream="echo",
            port=8080,
        ),
    )
    files = (("echo/index.html", b"echo app\n"), ("site/index.html", b"static site\n"))
    return Instance(**{**base.__dict__, "apps": apps, "files": files})


def _get(port: int, host: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def project(
    local_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[str], Path, int]]:
    """The rendered project, up; one per module (bringing it up takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("project")
    instance = _instance()
    options = RenderOptions(
        mode="resolved",
        secrets={"echo_token": "t0ken"}.get,
        https=False,
        image_map={"caddy:2.8.4": local_image, "busybox:1.36": local_image},
    )
    root, data = tmp_path / "root", tmp_path / "data"
    render_instance(instance, options).write(root)
    data.mkdir()
    override = tmp_path / "override.yaml"
    override.write_text('services:\n  caddy:\n    ports: !override ["127.0.0.1::80"]\n')
    name = f"swapyard-render-test-{uuid.uuid4().hex[:8]}"
    compose = [_docker_compose(), "-p", name, "-f", str(root / "compose.yaml"), "-f", str(override)]
    env = {**os.environ, "SWAPYARD_ROOT": str(root), "SWAPYARD_DATA": str(data)}
    try:
        up = _run(*compose, "up", "-d", "--wait", "--wait-timeout", "60", env=env)
        assert up.returncode == 0, up.stderr[-3000:]
        port_out = _run(*compose, "port", "caddy", "80", env=env).stdout.strip()
        port = int(port_out.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "example.test")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = _run(*compose, "logs", env=env).stdout[-3000:]
                pytest.fail(f"caddy did not answer in time:\n{logs}")
            time.sleep(0.2)
        yield [*compose], root, port
    finally:
        _run(*compose, "down", "--volumes", "--timeout", "5", env=env)


def test_project_runs_behind_caddy_with_maintenance(project: tuple[list[str], Path, int]) -> None:
    _, root, port = project
    assert _get(port, "example.test")[::2] == (200, b"static site\n")
    assert _get(port, "echo.example.test")[::2] == (200, b"echo app\n")

    (root / "maintenance" / "on").touch()
    page = (root / "maintenance" / "index.html").read_bytes()
    for host in ("example.test", "echo.example.test"):
        status, headers, body = _get(port, host)
        assert (status, headers.get("Retry-After"), body) == (503, "300", page)
    (root / "maintenance" / "on").unlink()
    assert _get(port, "echo.example.test")[0] == 200


def test_secret_env_and_labels_reach_the_container(project: tuple[list[str], Path, int]) -> None:
    compose, _, _ = project
    env = _run(*compose, "exec", "-T", "echo", "env").stdout
    assert "TOKEN=t0ken" in env.splitlines()
    assert "GREETING=hello" in env.splitlines()
    name = compose[compose.index("-p") + 1]
    writers = _run(
        "docker",
        "ps",
        "--filter",
        f"label=com.docker.compose.project={name}",
        "--filter",
        "label=org.swapyard.writer=true",
        "--format",
        '{{.Label "com.docker.compose.service"}}',
    )
    assert writers.stdout.split() == ["echo"]


def test_only_exposed_services_are_reachable_from_caddy(
    project: tuple[list[str], Path, int],
) -> None:
    """Name resolution on the networks (busybox's own resolver; its static wget crashes)."""
    compose, _, _ = project

    def resolves(container: str, name: str) -> bool:
        # read the answer: `compose exec` does not always pass the exit status on here
        out = _run(*compose, "exec", "-T", container, "nslookup", name).stdout
        return "NXDOMAIN" not in out and f"Name:\t{name}" in out

    assert resolves("echo", "echo-db")  # the app's own network
    assert resolves("caddy", "echo")  # exposed: on the edge network
    assert not resolves("caddy", "echo-db")  # not exposed: Caddy cannot even name it
