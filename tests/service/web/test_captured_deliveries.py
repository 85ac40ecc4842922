"""Conformance: deliveries captured from real forges (and their documented examples) are
accepted and understood, byte for byte as they were sent.

The only oracle of these tests is upstream data kept outside the repository
(shared/reference/payloads, see its SOURCES.md), so they form part of the
conformance layer (tests/conftest.py). The project's own fixtures, which the
other service tests use, are in tests/data/webhooks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import reference
from tests.service.deliveries import headers

pytestmark = pytest.mark.conformance

# captured file -> (the event header its forge sends with it, what swapyard makes of it)
CAPTURED: dict[str, tuple[str, str]] = {
    "github/ping-default.json": ("ping", "pong"),
    "github/push-normal.json": ("push", "queued"),
    "github/push-created-branch.json": ("push", "queued"),
    "github/push-created-tag.json": ("push", "ignored"),
    "github/push-deleted-tag.json": ("push", "ignored"),
    "github/pull_request-opened.json": ("pull_request", "queued"),
    "gitea/push-docs-example.json": ("push", "queued"),
    "gitea/push-captured-created-branch.json": ("push", "queued"),
    "gitlab/push-docs-example.json": ("Push Hook", "queued"),
    "gitlab/tag_push-docs-example.json": ("Tag Push Hook", "ignored"),
}
SENDERS = {"github": ("github",), "gitea": ("gitea", "forgejo"), "gitlab": ("gitlab",)}
CASES = [
    pytest.param(sender, name, id=f"{sender}:{name.split('/', 1)[1]}")
    for name in CAPTURED
    for sender in SENDERS[name.split("/", 1)[0]]
]


def expected_event(body: dict[str, Any]) -> dict[str, Any]:
    """What the stored event must say, read from the captured body itself."""
    repo, project = body.get("repository") or {}, body.get("project") or {}
    pull = body.get("pull_request")
    if pull:
        number = body["number"]
        return {
            "kind": "pull_request",
            "ref": f"refs/pull/{number}/head",
            "after": pull["head"]["sha"],
            "repository": repo["full_name"],
        }
    return {
        "kind": "push",
        "ref": body["ref"],
        "before": body["before"],
        "after": body["after"],
        "repository": repo.get("full_name") or project["path_with_namespace"],
    }


@pytest.mark.parametrize(("sender", "name"), CASES)
def test_each_captured_delivery_is_accepted_as_sent(serve, sender: str, name: str) -> None:
    event, outcome = CAPTURED[name]
    raw = reference(f"payloads/{name}").read_bytes()  # the exact bytes: the signature covers them
    web = serve(workers=0)
    answer = web.hook(sender, event, raw)
    if outcome == "pong":
        assert (answer.status_code, answer.json()["status"]) == (200, "pong"), answer.text
        assert web.api("/api/events") == []
        return
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == outcome
    stored = web.api(f"/api/events/{answer.json()['event']}")
    want = expected_event(json.loads(raw))
    assert {key: stored[key] for key in want} == want
    if outcome == "ignored":
        assert "tag push" in stored["reason"]
    forged = web.hook(sender, event, raw, headers=_forged(sender, event, raw))
    assert forged.status_code == 401, forged.text


def _forged(sender: str, event: str, raw: bytes) -> dict[str, str]:
    """The same delivery signed with another secret."""
    return headers(sender, event, raw, "not the webhook secret", "forged")


def test_every_captured_delivery_is_checked() -> None:
    folder = reference("payloads")
    captured = {p.relative_to(folder).as_posix() for p in folder.rglob("*.json")}
    assert captured == set(CAPTURED), "list each captured delivery in CAPTURED with its outcome"
