"""Per-forge delivery details: which header holds what, and how signatures are checked.

GitHub and Gitea/Forgejo sign the raw body with HMAC-SHA256 (`X-Hub-Signature-256:
sha256=<hex>`; Gitea/Forgejo also send the bare hex in `X-Gitea-Signature` /
`X-Forgejo-Signature`). GitLab sends the shared secret verbatim in
`X-Gitlab-Token`. Every comparison is constant-time, and an empty header counts
as missing (Gitea sends empty signature headers when the hook has no secret).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qs

import orjson
from werkzeug.datastructures import Headers as HttpHeaders

from handlers.errors import PayloadError, SignatureError

Headers: TypeAlias = Mapping[str, str] | HttpHeaders  # a dict, or werkzeug's request headers


@dataclass(frozen=True)
class Forge:
    name: str
    event_headers: tuple[str, ...]
    delivery_headers: tuple[str, ...]
    hmac_headers: tuple[tuple[str, str], ...] = ()  # (header, prefix)
    token_header: str | None = None

    def header(self, headers: Headers, names: tuple[str, ...]) -> str | None:
        for name in names:
            value = headers.get(name)
            if value:
                return value.strip()
        return None

    def event_name(self, headers: Headers) -> str:
        name = self.header(headers, self.event_headers)
        if not name:
            raise PayloadError(
                f"{self.name} delivery without an event header ({' or '.join(self.event_headers)})"
            )
        return name

    def delivery_id(self, headers: Headers, body: bytes) -> str:
        found = self.header(headers, self.delivery_headers)
        return found or "sha256-of-body:" + hashlib.sha256(body).hexdigest()

    def verify(self, headers: Headers, body: bytes, secret: str | None) -> None:
        """Raise SignatureError unless the delivery carries a valid signature for `secret`."""
        if secret is None:
            return
        key = secret.encode()
        if self.token_header:
            token = headers.get(self.token_header) or ""
            if not token:
                raise SignatureError(f"missing {self.token_header} header")
            if not hmac.compare_digest(token.encode(), key):
                raise SignatureError(f"{self.token_header} does not match the webhook secret")
            return
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        for header, prefix in self.hmac_headers:
            value = (headers.get(header) or "").strip()
            if value.startswith(prefix):
                value = value[len(prefix) :]
            if value:
                if hmac.compare_digest(value.lower().encode(), expected.encode()):
                    return
                raise SignatureError(
                    f"{header} does not match HMAC-SHA256 of the body with the webhook secret"
                )
        raise SignatureError(
            f"missing signature header ({' or '.join(h for h, _ in self.hmac_headers)})"
        )


FORGES: dict[str, Forge] = {
    "github": Forge(
        "github",
        event_headers=("X-GitHub-Event",),
        delivery_headers=("X-GitHub-Delivery",),
        hmac_headers=(("X-Hub-Signature-256", "sha256="),),
    ),
    "gitea": Forge(
        "gitea",
        event_headers=("X-Forgejo-Event", "X-Gitea-Event", "X-Gogs-Event", "X-GitHub-Event"),
        delivery_headers=("X-Forgejo-Delivery", "X-Gitea-Delivery", "X-GitHub-Delivery"),
        hmac_headers=(
            ("X-Hub-Signature-256", "sha256="),
            ("X-Forgejo-Signature", ""),
            ("X-Gitea-Signature", ""),
        ),
    ),
    "gitlab": Forge(
        "gitlab",
        event_headers=("X-Gitlab-Event",),
        delivery_headers=("Idempotency-Key", "X-Gitlab-Event-UUID"),
        token_header="X-Gitlab-Token",
    ),
}


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON object of a delivery (JSON body, or form-encoded `payload=`)."""
    if (content_type or "").startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8", "replace"))
        if "payload" not in fields:
            raise PayloadError("form-encoded delivery without a payload= field")
        body = fields["payload"][0].encode()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(
            f"body is not JSON ({exc}); configure the webhook with content type application/json"
        ) from None
    if not isinstance(data, dict):
        raise PayloadError("body is JSON but not an object")
    return data
