"""deploy.providers.local.images: offline images, tagged by content, and the repository's
image map."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy.providers.local import images

EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "config-repo"


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("caddy:2.8.4", "caddy"),
        ("docker.io/library/caddy:2.8.4", "caddy"),
        ("caddy@sha256:" + "a" * 64, "caddy"),
        ("busybox:1.36", "busybox"),
        ("localhost:5000/team/app:1", "localhost:5000/team/app"),
        ("ghcr.io/example/orders-api:2.3.1", "ghcr.io/example/orders-api"),
    ],
)
def test_repository_of_an_image(image: str, repository: str) -> None:
    assert images._repository(image) == repository


def test_repository_images_cover_every_app_and_the_front_caddy() -> None:
    found, ports = images.repository_images(EXAMPLES)
    assert {"caddy:2.8.4", "ghost:5.105.0-alpine", "postgres:16.6-alpine"} <= found
    assert {"ghcr.io/example/orders-api:2.3.1", "louislam/uptime-kuma:1.23.16"} <= found
    assert {2368, 3000, 3001, 8080} <= ports


def test_standin_answers_any_path_and_passes_db_healthchecks(docker_client: Any) -> None:
    ref = images.standin_image("postgres:16.6-alpine", [80, 5432])
    assert images.standin_image("postgres:16.6-alpine", [80, 5432]) == ref  # reused, same tag
    container = docker_client.containers.run(
        ref, ["ignored", "command"], detach=True, ports={"80/tcp": ("127.0.0.1", None)}
    )
    try:
        container.reload()
        port = int(container.ports["80/tcp"][0]["HostPort"])
        deadline, last = time.monotonic() + 15, "no answer"
        while time.monotonic() < deadline:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/status.php", timeout=2)
                if r.status_code == 200:
                    break
                last = str(r.status_code)
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        else:
            pytest.fail(f"the stand-in never answered: {last}")
        assert "stand-in for postgres:16.6-alpine" in r.text
        for check in (["pg_isready", "-U", "x"], ["sh", "-c", "mysqladmin ping --silent"]):
            assert container.exec_run(check).exit_code == 0
    finally:
        container.remove(force=True)
