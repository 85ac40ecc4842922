"""Webhook deliveries as each forge sends them, built from the project's own fixtures.

tests/data/webhooks/<sender>/ holds, per sender (github, gitea, forgejo,
gitlab), the bodies of the events swapyard meets and `headers.json`: the
headers that sender puts on every delivery, with placeholders filled in per
delivery (`{event}`, `{event_type}`, `{delivery}`, `{hmac_sha256}`,
`{hmac_sha1}`, `{token}`). Its `unsigned` rule says what a hook without a
secret sends: GitHub and GitLab leave the signature headers out (`omit`),
Gitea and Forgejo send them empty (`empty`). Its `endpoint` names the
`/hooks/<forge>` path the sender is pointed at (Forgejo posts to `gitea`).

The fixtures are written from the fields the forges document, with invented
values (tests/data/webhooks/README.md); captured deliveries of real forges
stay outside the repository and are checked by the conformance layer
(test_captured_deliveries.py).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "webhooks"
SENDERS = ("github", "gitea", "forgejo", "gitlab")
SIGNATURE_FIELDS = ("{hmac_sha256}", "{hmac_sha1}", "{token}")


@functools.cache
def _load(relative: str) -> Any:
    path = DATA / relative
    if not path.is_file():
        raise FileNotFoundError(f"no webhook fixture {path}; the fixtures are in {DATA}")
    return json.loads(path.read_text())


def body(name: str) -> dict[str, Any]:
    """A fresh copy of the body `name` (e.g. "github/push.json"), for the test to adapt."""
    return copy.deepcopy(_load(name))


def endpoint(sender: str) -> str:
    """The `/hooks/<forge>` path segment `sender` delivers to."""
    return str(_load(f"{sender}/headers.json")["endpoint"])


def headers(
    sender: str,
    event: str,
    raw: bytes,
    secret: str | None,
    delivery: str,
    event_type: str | None = None,
) -> dict[str, str]:
    """Every header `sender` puts on a delivery of `raw`, signed with `secret` when given."""
    spec = _load(f"{sender}/headers.json")
    values = {
        "{event}": event,
        "{event_type}": event_type or event,
        "{delivery}": delivery,
        "{hmac_sha256}": _digest(secret, raw, hashlib.sha256),
        "{hmac_sha1}": _digest(secret, raw, hashlib.sha1),
        "{token}": secret or "",
    }
    sent: dict[str, str] = {}
    for name, template in spec["headers"].items():
        signs = any(field in template for field in SIGNATURE_FIELDS)
        if signs and secret is None and spec["unsigned"] == "omit":
            continue
        value = template
        for field, filled in values.items():
            value = value.replace(field, filled)
        sent[name] = value
    return sent


def _digest(secret: str | None, raw: bytes, algorithm: Any) -> str:
    return hmac.new(secret.encode(), raw, algorithm).hexdigest() if secret else ""
