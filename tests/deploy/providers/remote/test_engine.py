"""RemoteEngine against a real second Docker engine behind mutual TLS (engines.py).

The compose project is created the way an instance's `app-prepare.service` creates it:
`docker-compose up --no-start` pointed at the engine over TLS. Its front Caddy binds
the maintenance directory read-only, as the rendered compose file does, and publishes
port 80 on loopback, so maintenance and the health pass are observed over real HTTP.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests
import yaml

from deploy.providers.local.compose import default_compose
from deploy.providers.remote.engine import JOB_LABEL, JobMount, RemoteEngine
from deploy.providers.remote.pki import CertificateAuthority, ClientCredentials
from deploy.providers.types import (
    EngineRefused,
    EngineTimeout,
    EngineUnreachable,
    InstanceNotReady,
    ProviderError,
)
from renderers.layout import (
    HEALTH_PASS_HEADER,
    HEALTH_PASS_PREFIX,
    MAINTENANCE_DIR,
    MAINTENANCE_FLAG,
)
from tests.deploy.fixtures import CADDYFILE, HEALTH_PASS
from tests.deploy.providers.remote.engines import TLSEngine, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


@pytest.fixture(scope="module")
def images(docker_client: Any) -> dict[str, str]:
    """The local provider's test images on the main engine (built once, reused)."""
    from deploy.providers.local.images import caddy_image, tools_image

    return {"caddy": caddy_image(), "tools": tools_image()}


def compose_file(images: dict[str, str], root: Path, port: int) -> dict[str, Any]:
    writer = {"org.swapyard.writer": "true"}
    other = {"org.swapyard.writer": "false"}

    def httpd(text: str, ready_after: int = 0) -> list[str]:
        """A page saying `text`; /tmp/ready appears `ready_after` seconds after the start."""
        page = f"mkdir -p /www && echo {text} > /www/index.html"
        ready = f"(sleep {ready_after}; touch /tmp/ready) &"
        return ["sh", "-c", f"{page}; {ready} exec httpd -f -p 8080 -h /www"]

    return {
        "services": {
            "caddy": {
                "image": images["caddy"],
                "restart": "unless-stopped",
                "ports": [f"127.0.0.1:{port}:80"],
                "volumes": [
                    f"{root}/Caddyfile:/etc/caddy/Caddyfile:ro",
                    f"{root}/maintenance:{MAINTENANCE_DIR}:ro",  # read-only, as rendered
                ],
                "labels": other,
            },
            "web": {
                "image": images["tools"],
                "command": httpd("web"),
                "labels": other,
                "restart": "unless-stopped",
            },
            "notes": {
                "image": images["tools"],
                "command": httpd("notes", ready_after=2),
                "labels": writer,
                "restart": "unless-stopped",
                "healthcheck": {  # healthy 2 s after its start; the sidecar waits for that
                    "test": ["CMD", "test", "-f", "/tmp/ready"],
                    "interval": "1s",
                    "retries": 30,
                },
            },
            "sidecar": {  # no writer label, but waits for one: stops and starts with it
                "image": images["tools"],
                "command": ["sleep", "3600"],
                "labels": other,
                "depends_on": {"notes": {"condition": "service_healthy"}},
                "restart": "unless-stopped",
            },
        }
    }


def compose(engine: TLSEngine, project: str, root: Path, *args: str) -> None:
    argv = [default_compose(), "-p", project, "-f", str(root / "compose.yaml"), *args]
    result = subprocess.run(
        argv, env=engine.cli_env(), capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def instance(
    tls_engine: TLSEngine, images: dict[str, str], docker_client: Any, tmp_path_factory: Any
) -> Iterator[tuple[RemoteEngine, int]]:
    """A project on the test engine: images copied from the main engine, containers created
    (not started) like app-prepare.service does; the remote and Caddy's loopback port."""
    project = "sy-t-" + secrets.token_hex(3)
    remote = tls_engine.remote(project, settle=1.0)
    remote.copy_images(docker_client, images.values())
    root = tmp_path_factory.mktemp("instance")
    (root / "maintenance").mkdir()
    (root / "maintenance" / "index.html").write_text("maintenance\n")
    (root / "maintenance" / "on-call.png").write_text("a page asset named like the flag\n")
    caddyfile = CADDYFILE.replace("HEALTH_PASS", HEALTH_PASS).replace("WEBPORT", "8080")
    (root / "Caddyfile").write_text(caddyfile.replace("/srv/maintenance", MAINTENANCE_DIR))
    port = free_port()
    (root / "compose.yaml").write_text(yaml.safe_dump(compose_file(images, root, port)))
    compose(tls_engine, project, root, "up", "--no-start", "--pull", "never")
    yield remote, port
    compose(tls_engine, project, root, "down", "--timeout", "1")
    remote.close()


def get(port: int, host: str, **headers: str) -> requests.Response:
    return http().get(f"http://127.0.0.1:{port}/", headers={"Host": host, **headers}, timeout=5)


def wait_answer(port: int, host: str, status: int, **headers: str) -> requests.Response:
    """Caddy's answer once it is `status` (Caddy needs a moment after its container starts)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            resp = get(port, host, **headers)
            if resp.status_code == status or time.monotonic() > deadline:
                return resp
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def state_time(remote: RemoteEngine, service: str, field: str = "StartedAt") -> float:
    """When the container of `service` last started (or finished), in seconds since the epoch."""
    c = next(c for c in remote.containers() if c.service == service)
    stamp = remote.client.containers.get(c.id).attrs["State"][field]
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    whole = datetime.datetime.fromisoformat(seconds).replace(tzinfo=datetime.UTC)
    return whole.timestamp() + float(f"0.{fraction or 0}")


# -- who gets in ----------------------------------------------------------------


def test_the_right_client_gets_in(tls_engine: TLSEngine) -> None:
    remote = tls_engine.remote("none")
    remote.wait_until_reachable(10)
    assert remote.client.version()["ApiVersion"]
    assert remote.containers() == []


def test_a_client_without_a_certificate_is_refused(tls_engine: TLSEngine) -> None:
    creds = tls_engine.ca.client()
    with pytest.raises(requests.exceptions.SSLError):
        http().get(f"{tls_engine.base_url}/_ping", verify=str(creds.ca), timeout=5)
    # the same at the TLS layer: the engine ends the handshake without a client certificate
    context = ssl.create_default_context(cafile=str(creds.ca))
    with (
        socket.create_connection((tls_engine.host, tls_engine.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=tls_engine.host) as tls,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(100) == b""  # refused: nothing comes back
        raise ConnectionError("closed without an answer")


def test_a_certificate_from_another_ca_is_refused(tls_engine: TLSEngine, tmp_path: Path) -> None:
    other = CertificateAuthority(tmp_path / "other").client()
    mine = tls_engine.ca.client()
    # another CA's client certificate, the engine verified with the right CA
    crossed = ClientCredentials(mine.ca, other.certificate, other.key)
    remote = RemoteEngine("test-engine", tls_engine.host, tls_engine.port, crossed, "x")
    with pytest.raises(EngineRefused, match=r"test-engine .*TLS handshake failed"):
        remote.containers()
    # and with the other CA throughout, swapyard refuses the engine's certificate
    remote = RemoteEngine("test-engine", tls_engine.host, tls_engine.port, other, "x")
    with pytest.raises(EngineRefused, match=r"instance test-engine \(https://127.0.0.1:"):
        remote.wait_until_reachable(5)


def test_a_name_the_certificate_does_not_hold_is_refused(tls_engine: TLSEngine) -> None:
    creds = tls_engine.ca.client()
    remote = RemoteEngine("test-engine", "localhost", tls_engine.port, creds, "x")
    with pytest.raises(EngineRefused, match="localhost"):
        remote.containers()


def test_plain_http_is_refused(tls_engine: TLSEngine) -> None:
    resp = http().get(f"http://{tls_engine.host}:{tls_engine.port}/_ping", timeout=5)
    assert resp.status_code == 400 and "HTTPS" in resp.text
    resp = http().get(f"http://{tls_engine.host}:{tls_engine.port}/containers/json", timeout=5)
    assert resp.status_code == 400


def test_an_engine_that_is_not_there(tls_engine: TLSEngine) -> None:
    port = free_port()
    remote = RemoteEngine("gone", "127.0.0.1", port, tls_engine.ca.client(), "x")
    with pytest.raises(InstanceNotReady, match=rf"instance gone \(https://127.0.0.1:{port}\)"):
        remote.wait_until_reachable(1)
    with pytest.raises(EngineUnreachable, match=f"127.0.0.1:{port}"):
        remote.containers()


def test_the_main_engine_is_left_alone(tls_engine: TLSEngine, docker_client: Any) -> None:
    docker_client.ping()
    main_bridge = (
        docker_client.networks.get("bridge")
        .attrs["Options"]
        .get("com.docker.network.bridge.name", "docker0")
    )
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f" {main_bridge}:" in links  # dockerd --bridge=none would have deleted it
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert tls_engine.bridge not in rules
    mine = {n.id for n in tls_engine.local().networks.list()}
    assert not mine & {n.id for n in docker_client.networks.list()}


# -- images ----------------------------------------------------------------------


def test_images_are_copied_once_and_missing_ones_named(
    tls_engine: TLSEngine, docker_client: Any, images: dict[str, str]
) -> None:
    remote = tls_engine.remote("img")
    first = remote.copy_images(docker_client, images.values())
    second = remote.copy_images(docker_client, [*images.values(), images["tools"]])
    assert set(first.copied) | set(first.present) == set(images.values())
    assert second.copied == () and set(second.present) == set(images.values())
    for ref in images.values():
        assert tls_engine.local().images.get(ref).id == docker_client.images.get(ref).id
    missing = "swapyard-test/nowhere:" + secrets.token_hex(4)
    with pytest.raises(ProviderError, match=f"neither .* holds {missing}"):
        remote.copy_images(docker_client, [missing])
    report = remote.copy_images(docker_client, [missing, images["caddy"]], missing_ok=True)
    assert report.missing == (missing,) and report.present == (images["caddy"],)


def test_images_sharing_a_layer_are_copied_in_one_save_that_carries_it_once(
    tls_engine: TLSEngine, docker_client: Any, images: dict[str, str]
) -> None:
    layers = [set(docker_client.images.get(images[k]).attrs["RootFS"]["Layers"]) for k in images]
    assert layers[0] & layers[1], "the local images are expected to share their Debian root"
    # fresh tags of them, so the test engine lacks these references whatever ran before
    tag = secrets.token_hex(4)
    refs = [f"swapyard-test/shared-{name}:{tag}" for name in images]
    for name, ref in zip(images, refs, strict=True):
        docker_client.images.get(images[name]).tag(ref)
    try:
        apart = sum(len(chunk) for r in refs for chunk in docker_client.api.get_image(r))
        report = tls_engine.remote("shared").copy_images(docker_client, refs)
        assert report.copied == tuple(refs)
        assert report.bytes < 0.75 * apart, (report.bytes, apart)  # the shared layer went once
        for ref in refs:
            assert tls_engine.local().images.get(ref).id == docker_client.images.get(ref).id
    finally:
        for client in (docker_client, tls_engine.local()):
            for ref in refs:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(ref)  # the tag only: the image keeps its others


# -- the project -----------------------------------------------------------------


def test_wait_for_project(instance: tuple[RemoteEngine, int]) -> None:
    remote, _ = instance
    found = remote.wait_for_project(["caddy", "web", "notes", "sidecar"], 30)
    assert {c.service for c in found} == {"caddy", "web", "notes", "sidecar"}
    assert {c.service for c in remote.containers(writers=True)} == {"notes", "sidecar"}
    with pytest.raises(InstanceNotReady, match="no container for db"):
        remote.wait_for_project(["web", "db"], 0.5)


def test_non_writers_then_writers_start_and_stop(instance: tuple[RemoteEngine, int]) -> None:
    remote, port = instance
    remote.start()
    remote.start()  # idempotent
    status = {c.service: c.status for c in remote.containers()}
    assert status["caddy"] == status["web"] == "running"
    assert status["notes"] == status["sidecar"] == "created"
    assert wait_answer(port, "web.test", 200).text == "web\n"
    assert get(port, "notes.test").status_code == 502  # the writer is not up yet
    remote.start_writers()
    remote.start_writers()
    assert {c.status for c in remote.containers()} == {"running"}
    notes = next(c for c in remote.containers() if c.service == "notes")
    assert notes.health == "healthy"
    # the sidecar started only once the writer it waits for was healthy
    assert state_time(remote, "sidecar") - state_time(remote, "notes") >= 2
    assert wait_answer(port, "notes.test", 200).text == "notes\n"
    remote.stop_writers(timeout=2)
    remote.stop_writers(timeout=2)
    status = {c.service: c.status for c in remote.containers()}
    assert status["notes"] == status["sidecar"] == "exited"
    # the dependent first: neither handles SIGTERM, so each took its 2 s
    finished = {s: state_time(remote, s, "FinishedAt") for s in ("notes", "sidecar")}
    assert finished["notes"] - finished["sidecar"] >= 1.5
    assert status["web"] == "running"
    assert wait_answer(port, "notes.test", 502).status_code == 502
    assert get(port, "web.test").status_code == 200
    remote.start_writers()
    assert wait_answer(port, "notes.test", 200).text == "notes\n"


def test_maintenance_and_health_pass(
    instance: tuple[RemoteEngine, int], tls_engine: TLSEngine
) -> None:
    remote, port = instance
    remote.start()
    assert wait_answer(port, "web.test", 200).status_code == 200
    remote.set_maintenance(True)
    remote.set_maintenance(True)
    down = get(port, "web.test")
    assert down.status_code == 503 and down.headers["Retry-After"]
    token, newer = secrets.token_hex(16), secrets.token_hex(16)
    remote.set_health_pass(token)
    assert get(port, "web.test", **{HEALTH_PASS_HEADER: token}).status_code == 200
    assert get(port, "web.test").status_code == 503
    remote.set_health_pass(newer)  # replaces the old pass
    assert get(port, "web.test", **{HEALTH_PASS_HEADER: token}).status_code == 503
    assert get(port, "web.test", **{HEALTH_PASS_HEADER: newer}).status_code == 200
    remote.set_health_pass(None)
    assert get(port, "web.test", **{HEALTH_PASS_HEADER: newer}).status_code == 503
    remote.set_maintenance(False)
    remote.set_maintenance(False)
    assert get(port, "web.test").status_code == 200
    for bad in ("../on", secrets.token_hex(16) + "\n", secrets.token_hex(16).upper(), ""):
        with pytest.raises(ProviderError, match="health pass token"):
            remote.set_health_pass(bad)
    # the page is still there, no flag or pass is left, and no helper container either
    left = (
        remote.client.containers.get(
            next(c.id for c in remote.containers() if c.service == "caddy")
        )
        .exec_run(["ls", MAINTENANCE_DIR])
        .output.decode()
        .split()
    )
    assert left == ["index.html", "on-call.png"]
    assert not [n for n in left if n == MAINTENANCE_FLAG or n.startswith(HEALTH_PASS_PREFIX)]
    assert tls_engine.local().containers.list(all=True, filters={"label": JOB_LABEL}) == []


def test_a_container_that_exits_right_after_start_is_reported(
    tls_engine: TLSEngine, images: dict[str, str], docker_client: Any, tmp_path: Path
) -> None:
    project = "sy-t-" + secrets.token_hex(3)
    remote = tls_engine.remote(project, settle=2.0)
    remote.copy_images(docker_client, [images["tools"]])
    spec = {
        "services": {
            "broken": {
                "image": images["tools"],
                "command": ["sh", "-c", "echo config file is missing >&2; exit 3"],
                "restart": "unless-stopped",
                "labels": {"org.swapyard.writer": "false"},
            }
        }
    }
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(spec))
    compose(tls_engine, project, tmp_path, "up", "--no-start", "--pull", "never")
    try:
        with pytest.raises(ProviderError, match=r"service broken .*config file is missing"):
            remote.start()
    finally:
        compose(tls_engine, project, tmp_path, "down", "--timeout", "1")


# -- one-off jobs ---------------------------------------------------------------


def test_run_container_passes_env_and_returns_exit_code(
    tls_engine: TLSEngine, images: dict[str, str], docker_client: Any, tmp_path: Path
) -> None:
    remote = tls_engine.remote("jobs")
    remote.copy_images(docker_client, [images["tools"]])
    (tmp_path / "in.txt").write_text("from the volume\n")
    result = remote.run_container(
        images["tools"],
        [
            "sh",
            "-c",
            'cat /data/in.txt; echo "pw=$RESTIC_PASSWORD" > /data/out.txt; '
            'echo "pw is $RESTIC_PASSWORD"; exit 7',
        ],
        environment={"RESTIC_PASSWORD": "s3cret"},
        mounts=[JobMount(str(tmp_path), "/data")],
        timeout=60,
    )
    assert result.exit_code == 7
    assert result.logs == "from the volume\npw is s3cret\n"
    assert (tmp_path / "out.txt").read_text() == "pw=s3cret\n"
    local = tls_engine.local()
    assert local.containers.list(all=True, filters={"label": JOB_LABEL}) == []
    # a read-only mount stays read-only
    result = remote.run_container(
        images["tools"], ["touch", "/data/x"], mounts=[JobMount(str(tmp_path), "/data", True)]
    )
    assert result.exit_code != 0 and "Read-only" in result.logs
    # output is bounded to its tail
    big = remote.run_container(
        images["tools"],
        ["sh", "-c", "yes 0123456789 | head -c 3000000; echo END"],
        log_bytes=1000,
    )
    assert big.exit_code == 0 and len(big.logs) == 1000 and big.logs.endswith("END\n")


def test_a_job_past_its_timeout_is_killed_and_removed(
    tls_engine: TLSEngine, images: dict[str, str], docker_client: Any
) -> None:
    remote = tls_engine.remote("jobs")
    remote.copy_images(docker_client, [images["tools"]])
    with pytest.raises(EngineTimeout, match=r"did not end in 1 s .*started"):
        remote.run_container(images["tools"], ["sh", "-c", "echo started; sleep 60"], timeout=1)
    assert tls_engine.local().containers.list(all=True, filters={"label": JOB_LABEL}) == []
