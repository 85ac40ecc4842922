"""Caddyfile: valid for the real caddy, and maintenance mode without a reload."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from renderers import RenderOptions, render_instance
from renderers.caddyfile import render_caddyfile
from schemas.model import App, Instance
from tests.renderers.helpers import example_instances


def _caddy() -> str:
    found = shutil.which("caddy")
    if not found:
        pytest.skip("caddy is not installed; apt-get install caddy")
    return found


def _env(tmp_path: Path) -> dict[str, str]:
    """caddy keeps certificates and autosaved config under HOME/XDG: keep them in tmp_path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


def _validate(caddyfile: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "Caddyfile"
    path.write_bytes(caddyfile)
    return subprocess.run(
        [_caddy(), "validate", "--adapter", "caddyfile", "--config", str(path)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("https", [None, True, False], ids=["instance", "on", "off"])
def test_real_caddy_validates_it(instance: Instance, https: bool | None, tmp_path: Path) -> None:
    result = _validate(render_instance(instance, RenderOptions(https=https))["Caddyfile"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Valid configuration" in result.stdout + result.stderr


def test_https_off_uses_http_addresses(instance: Instance) -> None:
    text = render_caddyfile(instance, RenderOptions(https=False)).decode()
    assert "\tauto_https off\n" in text
    for domain in instance.domains:
        assert f"\nhttp://{domain} {{\n" in text
    on = render_caddyfile(instance, RenderOptions(https=True)).decode()
    assert "auto_https" not in on
    for domain in instance.domains:
        assert f"\n{domain} {{\n" in on


def test_acme_email_and_access_logs(instance: Instance) -> None:
    text = render_caddyfile(instance, RenderOptions()).decode()
    if instance.acme_email:
        assert f"\temail {instance.acme_email}\n" in text
    sites = len(set(instance.domains))
    assert text.count("\tlog {\n\t\toutput stdout\n\t\tformat json\n\t}\n") == sites
    assert text.count("\t\timport maintenance\n") == sites


def _shared_domain() -> Instance:
    base = next(i for i in example_instances() if i.name == "www")
    apps = (
        App(name="home", kind="custom", domains=("x.test",), path="/", upstream="home", port=80),
        App(name="api", kind="custom", domains=("x.test",), path="/api", upstream="api", port=81),
        App(
            name="apiv2",
            kind="custom",
            domains=("x.test",),
            path="/api/v2/",
            upstream="v2",
            port=82,
        ),
    )
    return Instance(**{**base.__dict__, "apps": apps})


def test_most_specific_path_first_and_catch_all_last() -> None:
    text = render_caddyfile(_shared_domain(), RenderOptions()).decode()
    v2, api, home = (text.index(s) for s in ("v2:82", "api:81", "home:80"))
    assert v2 < api < home
    assert "@apiv2 path /api/v2 /api/v2/*\n" in text
    assert "Not found" not in text


def test_a_domain_without_a_root_app_answers_404(tmp_path: Path) -> None:
    only_path = _shared_domain()
    only_path = Instance(**{**only_path.__dict__, "apps": only_path.apps[1:]})
    text = render_caddyfile(only_path, RenderOptions()).decode()
    assert 'respond "Not found" 404' in text
    assert _validate(text.encode(), tmp_path).returncode == 0


# --- maintenance mode against a running caddy ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, host: str, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def running_caddy(tmp_path: Path) -> Iterator[tuple[int, Path, bytes]]:
    """The www example's Caddyfile served by a real caddy on a loopback port.

    The container paths are pointed at tmp_path and the HTTP port at a free
    one; everything else is the rendered file as it is.
    """
    caddy = _caddy()
    instance = next(i for i in example_instances() if i.name == "www")
    artifacts = render_instance(instance, RenderOptions(https=False))
    root = tmp_path / "root"
    artifacts.write(root)
    port = _free_port()
    text = artifacts["Caddyfile"].decode()
    text = text.replace("/etc/swapyard/maintenance", str(root / "maintenance"))
    text = text.replace("/srv/static/site", str(root / "files" / "site"))
    text = text.replace(
        "{\n\tadmin off\n", f"{{\n\tadmin off\n\thttp_port {port}\n\tdefault_bind 127.0.0.1\n", 1
    )
    config = tmp_path / "Caddyfile"
    config.write_text(text)
    process = subprocess.Popen(
        [caddy, "run", "--adapter", "caddyfile", "--config", str(config)],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _get(port, "example.org")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    _, err = process.communicate()
                    pytest.fail(f"caddy did not start: {err.decode()[-2000:]}")
                time.sleep(0.1)
        yield port, root / "maintenance", artifacts["maintenance/index.html"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_maintenance_flag_switches_without_reload(running_caddy: tuple[int, Path, bytes]) -> None:
    port, maintenance, page = running_caddy
    site = (Path(maintenance).parent / "files" / "site" / "index.html").read_bytes()
    status, _, body = _get(port, "example.org")
    assert (status, body) == (200, site)

    (maintenance / "on").touch()
    for host, path in (
        ("example.org", "/"),
        ("example.org", "/api/orders"),
        ("www.example.org", "/x"),
        ("status.example.org", "/"),
    ):
        status, headers, body = _get(port, host, path)
        assert status == 503, (host, path)
        assert headers["Retry-After"] == "300"
        assert body == page

    (maintenance / "on").unlink()
    status, headers, body = _get(port, "www.example.org")
    assert (status, body) == (200, site)
    assert "Retry-After" not in headers
