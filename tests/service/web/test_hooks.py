"""Receiving: signatures, limits, classification, duplicates, over real HTTP."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from schemas.errors import SwapyardError
from service.settings import ServiceConfigError, settings_of
from service.web.app import create_app
from tests.service.conftest import SECRET, ZERO, push_body
from tests.service.deliveries import body as fixture


@pytest.fixture
def web(serve, config_repo):
    return serve(config_repo, workers=0)


def stored(web) -> list[dict]:
    return web.api("/api/events")


def test_refuses_to_start_without_a_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("SWAPYARD_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ServiceConfigError, match="SWAPYARD_WEBHOOK_SECRET") as info:
        create_app({"data_dir": str(tmp_path)})
    assert isinstance(info.value, SwapyardError)
    app = create_app({"data_dir": str(tmp_path), "allow_unsigned": True})
    assert settings_of(app).webhook_secret is None


def test_signed_push_is_stored_before_the_202(web, config_repo):
    sha = config_repo.sha()
    t0 = time.monotonic()
    r = web.push(ZERO, sha)
    elapsed = time.monotonic() - t0
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["url"] == f"{web.url}/api/events/{body['event']}"
    event = web.api(f"/api/events/{body['event']}")
    assert (event["after"], event["ref"], event["status"]) == (sha, "refs/heads/main", "queued")
    assert elapsed < 2.0


@pytest.mark.parametrize(
    "headers, why",
    [
        ({"X-Hub-Signature-256": ""}, "missing"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "wrong"),
        ({"X-Hub-Signature-256": "sha1=abc"}, "wrong"),
    ],
)
def test_bad_signature_is_401_and_nothing_stored(web, config_repo, headers, why):
    body = push_body(config_repo, ZERO, config_repo.sha())
    r = web.hook("github", "push", body, sign=why != "missing", headers=headers)
    assert r.status_code == 401, r.text
    assert "signature" in r.json()["error"].lower() or "X-Hub" in r.json()["error"]
    assert stored(web) == []


def test_body_signed_with_another_secret_is_401(web, config_repo):
    web.secret = "not the secret"
    r = web.push(ZERO, config_repo.sha())
    assert r.status_code == 401
    assert stored(web) == []


def test_oversized_body_is_413(web):
    r = web.hook("github", "push", b"{" + b" " * (64 * 1024 + 10) + b"}")
    assert r.status_code == 413
    assert "limit" in r.json()["error"]
    assert stored(web) == []


def test_not_json_is_400(web):
    r = web.hook("github", "push", b"this is not json")
    assert r.status_code == 400
    assert "not JSON" in r.json()["error"]
    assert stored(web) == []


def test_missing_event_header_is_400(web):
    raw = json.dumps({"zen": "x"}).encode()
    import hashlib
    import hmac

    sig = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    r = requests.post(
        f"{web.url}/hooks/github",
        data=raw,
        timeout=5,
        headers={"X-Hub-Signature-256": f"sha256={sig}"},
    )
    assert r.status_code == 400
    assert "X-GitHub-Event" in r.json()["error"]


def test_unknown_forge_is_404(web):
    r = web.hook("github", "push", {"a": 1})
    assert r.status_code == 202 or r.status_code == 400  # github route exists
    r = requests.post(f"{web.url}/hooks/bitbucket", data=b"{}", timeout=5)
    assert r.status_code == 404


def test_ping_is_200_and_not_stored(web):
    r = web.hook("github", "ping", fixture("github/ping.json"))
    assert r.status_code == 200
    assert r.json()["status"] == "pong"
    assert stored(web) == []


TAG = "tag push (v2024.06): tags are not deployed"
DELETED = "branch try-new-proxy deleted: nothing is destroyed (set state: absent to destroy)"


@pytest.mark.parametrize(
    ("sender", "event", "name", "reason"),
    [
        ("github", "push", "github/push-tag.json", TAG),
        ("gitea", "push", "gitea/push-tag.json", TAG),
        ("forgejo", "push", "gitea/push-tag.json", TAG),
        ("gitlab", "Tag Push Hook", "gitlab/tag_push.json", TAG),
        ("github", "push", "github/push-deleted-branch.json", DELETED),
        ("gitea", "delete", "gitea/delete-branch.json", DELETED),
        ("forgejo", "delete", "gitea/delete-branch.json", DELETED),
        ("gitlab", "Push Hook", "gitlab/push-deleted-branch.json", DELETED),
    ],
)
def test_tags_and_deleted_branches_are_recorded_as_ignored(web, sender, event, name, reason):
    r = web.hook(sender, event, fixture(name))
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("ignored", reason)
    [stored_event] = stored(web)
    assert (stored_event["status"], stored_event["reason"]) == ("ignored", reason)
    assert stored_event["repository"] == "acme-hosting/server-config"


def test_deleted_branch_of_the_config_repository_is_ignored(web, config_repo):
    r = web.hook("github", "push", push_body(config_repo, config_repo.sha(), ZERO, "feature-x"))
    assert r.status_code == 202
    assert "branch feature-x deleted" in r.json()["reason"]


@pytest.mark.parametrize(
    ("sender", "event", "name"),
    [
        ("github", "push", "github/push.json"),
        ("gitea", "push", "gitea/push.json"),
        ("forgejo", "push", "gitea/push.json"),
        ("gitlab", "Push Hook", "gitlab/push.json"),
        ("github", "pull_request", "github/pull_request-opened.json"),
        ("gitea", "pull_request", "gitea/pull_request-opened.json"),
        ("forgejo", "pull_request", "gitea/pull_request-opened.json"),
        ("gitlab", "Merge Request Hook", "gitlab/merge_request-opened.json"),
    ],
)
def test_each_forges_push_and_pull_request_are_queued(web, sender, event, name):
    """Every header the forge sends, its signature scheme, its body: queued for the worker."""
    body = fixture(name)
    r = web.hook(sender, event, body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    [queued] = stored(web)
    assert queued["repository"] == "acme-hosting/server-config"
    if "push" in name:
        assert (queued["kind"], queued["ref"]) == ("push", "refs/heads/main")
        assert (queued["before"], queued["after"]) == (body["before"], body["after"])
    else:
        assert queued["kind"] == "pull_request"
        assert queued["after"] == "e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6"  # the head commit
    unsigned = web.hook(sender, event, body, sign=False)
    assert unsigned.status_code == 401, unsigned.text
    assert len(stored(web)) == 1


def test_unhandled_event_is_recorded_as_ignored(web):
    r = web.hook("github", "issues", {"action": "opened", "repository": {"full_name": "o/r"}})
    assert r.status_code == 202
    assert r.json()["reason"] == "github event 'issues' is not handled"
    assert [e["status"] for e in stored(web)] == ["ignored"]


def test_duplicate_delivery_is_200_and_stored_once(web, config_repo):
    delivery = str(uuid.uuid4())
    first = web.push(ZERO, config_repo.sha(), delivery=delivery)
    again = web.push(ZERO, config_repo.sha(), delivery=delivery)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["event"] == first.json()["event"]
    assert len(stored(web)) == 1


def test_gitea_bare_hex_signature(web, config_repo):
    body = fixture("gitea/push.json")
    body["after"] = config_repo.sha()
    r = web.hook("gitea", "push", body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    # only the bare-hex header, as older Gitea sends it
    import hashlib
    import hmac

    raw = json.dumps(body).encode()
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    r = requests.post(
        f"{web.url}/hooks/gitea",
        data=raw,
        timeout=5,
        headers={
            "X-Gitea-Event": "push",
            "X-Gitea-Delivery": str(uuid.uuid4()),
            "X-Gitea-Signature": digest,
            "X-Hub-Signature-256": "sha256=",
        },
    )
    assert r.status_code == 202, r.text
    r = requests.post(
        f"{web.url}/hooks/gitea",
        data=raw,
        timeout=5,
        headers={
            "X-Gitea-Event": "push",
            "X-Gitea-Delivery": str(uuid.uuid4()),
            "X-Gitea-Signature": "",
            "X-Hub-Signature-256": "sha256=",
        },
    )
    assert r.status_code == 401


def test_gitlab_token(web, config_repo):
    body = fixture("gitlab/push.json")
    body["after"] = config_repo.sha()
    assert web.hook("gitlab", "Push Hook", body).status_code == 202
    web.secret = "wrong token"
    assert web.hook("gitlab", "Push Hook", body).status_code == 401
    assert web.hook("gitlab", "Push Hook", body, sign=False).status_code == 401
    web.secret = SECRET
    r = web.hook("gitlab", "Tag Push Hook", fixture("gitlab/tag_push.json"))
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    assert "tag push (v2024.06)" in r.json()["reason"]


def test_unsigned_accepted_only_when_allowed(serve, config_repo, tmp_path):
    web = serve(config_repo, workers=0, webhook_secret=None, allow_unsigned=True)
    r = web.hook("github", "push", push_body(config_repo, ZERO, config_repo.sha()), sign=False)
    assert r.status_code == 202


def test_api_needs_the_token(web):
    assert requests.get(f"{web.url}/api/events", timeout=5).status_code == 401
    r = requests.get(f"{web.url}/api/events", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401
    assert web.api("/api/events") == []
    metrics = requests.get(f"{web.url}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert "swapyard_queue_depth" in metrics.text
