"""DeploySpec from the validated model, and the health check's rules (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

import schemas
from deploy.providers.types import HealthCheckFailed
from deploy.spec import AppCheck, DeploySpec, check_apps

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "config-repo"


def test_spec_from_the_example_instance() -> None:
    repo = schemas.load_repo(EXAMPLES)
    www = next(i for i in repo.instances if i.key == "production/www")
    spec = DeploySpec.from_instance(www, b'{"ignition": {"version": "3.4.0"}}', "a" * 40)
    assert spec.volume.id == "sy-production-www" and spec.volume.label == www.volume.label
    assert AppCheck("api", "example.org", "/api/healthz") in spec.apps
    # each once: site and api share example.org, and Caddy refuses a repeated host
    assert sorted(spec.all_domains) == ["example.org", "status.example.org", "www.example.org"]
    journaled = json.dumps(spec.to_json())
    assert "ignition" not in journaled  # resolved secrets never reach the journal
    assert spec.digest.startswith("sha256:")


def fake_get(statuses: list[Any]) -> Any:
    def get(url: str, **kw: Any) -> Any:
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        if isinstance(status, Exception):
            raise status
        return SimpleNamespace(status_code=status)

    return get


def test_health_check_retries_until_healthy() -> None:
    get = fake_get([requests.ConnectionError(), 502, 401])
    check_apps(("127.0.0.1", 1), (AppCheck("blog", "b.test"),), timeout=5, interval=0, get=get)


def test_health_check_names_the_app_and_the_last_answer() -> None:
    apps = (AppCheck("site", "s.test"), AppCheck("blog", "b.test", "/health"))
    get = fake_get([200, 503])
    with pytest.raises(HealthCheckFailed) as err:
        check_apps(("127.0.0.1", 1), apps, timeout=0.2, interval=0.05, get=get)
    message = str(err.value)
    assert message.startswith("health check of blog timed out after 0.2 s")
    assert "GET /health for b.test: HTTP 503" in message
