"""Hetzner DNS driver: one zone's address records through the Hetzner Cloud API's RRSets.

Which API: Hetzner moved DNS hosting into the Hetzner Cloud API
(`https://api.hetzner.cloud/v1`: `/zones`, `/zones/{zone}/rrsets`, RRSet
actions such as `set_records`, a project's Bearer token) and announced the end
of the older DNS Console API (`dns.hetzner.com/api/v1`, `Auth-API-Token`,
`/records`). The Cloud API's zone and RRSet endpoints are documented
(docs.hetzner.cloud, reference "Zones", "Zone RRSets", "Zone RRSet Actions")
and used by Hetzner's own clients, so this driver speaks that one only; a
DNS Console token does not work here.

The API has no batch across record sets and no prerequisites, so `apply`:

1. reads every name again and compares it with its change's `expect`
   (`DnsConflict`, nothing written, when any differs);
2. per name, first writes what stays: each wanted RRSet (A, AAAA, the TXT
   mark) is set in place (`set_records`, `change_ttl`) or created; only
   then deletes what goes (a type no longer wanted; everything, marks last,
   when the name is removed). Between two steps the name resolves to the
   old addresses, the new ones or both, never to nothing;
3. waits for each write's action to finish (bounded) before the next, so a
   delete never overtakes the create it follows.

Names are written one after the other, so a failure part-way (the API
down, a token that may read but not write) leaves the names before it
written, each one whole; the error names the one that failed.

A record set that vanished (404) or appeared (409 `uniqueness_error`)
between the read and the write is a `DnsConflict` too. Rate limiting (429)
is retried a few times with backoff bounded by `RateLimit-Reset`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from deploy.dns.base import (
    DnsConflict,
    DnsDriver,
    DnsError,
    DnsRefused,
    DnsUnreachable,
    NameChange,
    NameRecords,
    ZoneAccess,
    in_zone,
    mark_name,
)
from deploy.dns.txt import quote_txt, unquote_txt

PUBLIC_ENDPOINT = "https://api.hetzner.cloud/v1"
ADDRESS_TYPES = ("A", "AAAA")
PER_PAGE = 50

RRSet = dict[str, Any]


class HetznerApiError(DnsError):
    """The API answered with an error: its HTTP status and error code kept beside the message."""

    def __init__(self, message: str, status: int, code: str):
        super().__init__(message)
        self.status = status
        self.code = code


class HetznerDriver(DnsDriver):
    """A primary zone of a Hetzner Cloud project (or a compatible API at `access.endpoint`)."""

    name = "hetzner"
    action_deadline = 60.0  # seconds one action may stay running
    action_poll = 0.5
    rate_limit_retries = 4
    rate_limit_wait_cap = 8.0  # seconds, per retry

    def __init__(self, access: ZoneAccess):
        super().__init__(access)
        self.base = (access.endpoint or PUBLIC_ENDPOINT).rstrip("/")
        self.where = f"Hetzner DNS zone {self.zone} at {self.base}"
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc from the environment
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "swapyard"
        if access.token:
            self.session.headers["Authorization"] = f"Bearer {access.token}"
        self._zone: dict[str, Any] | None = None

    # --- HTTP -----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        doing: str,
        *,
        params: Any = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call, retried on 429; the decoded answer, or the `DnsError` for it."""
        if not self.access.token:
            raise DnsRefused(f"{self.where}: {doing}: no API token (set the dns token secret)")
        for attempt in range(self.rate_limit_retries + 1):
            try:
                resp = self.session.request(
                    method, self.base + path, params=params, json=body, timeout=self.access.timeout
                )
            except requests.Timeout as exc:
                raise DnsUnreachable(
                    f"{self.where}: {doing}: no answer within {self.access.timeout:g}s ({exc})"
                ) from None
            except requests.ConnectionError as exc:
                raise DnsUnreachable(f"{self.where}: {doing}: cannot connect ({exc})") from None
            if resp.status_code == 429 and attempt < self.rate_limit_retries:
                time.sleep(self._retry_wait(resp, attempt))
                continue
            if resp.ok:
                try:
                    return dict(resp.json()) if resp.content else {}
                except ValueError:
                    raise DnsError(
                        f"{self.where}: {doing}: answer is not JSON: {resp.text[:200]!r}"
                    ) from None
            raise self._fail(doing, resp)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _retry_wait(self, resp: requests.Response, attempt: int) -> float:
        """Seconds to wait after a 429: exponential backoff, no later than the API's
        `Retry-After`/`RateLimit-Reset`, capped."""
        wait = 0.5 * 2**attempt
        try:
            if "Retry-After" in resp.headers:
                wait = min(wait, float(resp.headers["Retry-After"]))
            elif "RateLimit-Reset" in resp.headers:
                wait = min(wait, float(resp.headers["RateLimit-Reset"]) - time.time())
        except ValueError:
            pass
        return min(max(wait, 0.05), self.rate_limit_wait_cap)

    def _fail(self, doing: str, resp: requests.Response) -> DnsError:
        """The `DnsError` for an error answer, quoting the API's code and message."""
        try:
            error = resp.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = error.get("code", "")
        said = error.get("message") or resp.text[:200] or resp.reason
        fields = (error.get("details") or {}).get("fields") or []
        if fields:
            said += " (" + "; ".join(f"{f.get('name')}: {f.get('messages')}" for f in fields) + ")"
        status = resp.status_code
        answer = f"HTTP {status} {code}".rstrip()
        message = f"{self.where}: {doing} failed: {answer}: {said}"
        if status in (401, 403):
            return DnsRefused(message + " (check the API token and that it may read and write)")
        if status == 429:
            message += f" (still rate limited after {self.rate_limit_retries} retries)"
        return HetznerApiError(message, status, code)

    # --- the zone ---------------------------------------------------------------

    def zone_info(self) -> dict[str, Any]:
        """The zone as the API describes it (id, mode, default ttl), looked up by name once."""
        if self._zone is None:
            answer = self._request("GET", "/zones", "finding the zone", params={"name": self.zone})
            found = [z for z in answer.get("zones", []) if z.get("name") == self.zone]
            if not found:
                raise DnsError(
                    f"{self.where}: no zone named {self.zone} in the token's project "
                    "(create it in the Hetzner Console, or check the token's project)"
                )
            zone = found[0]
            if zone.get("mode") != "primary":
                raise DnsError(
                    f"{self.where}: the zone is in {zone.get('mode')} mode; its records are "
                    "transferred from another primary, so change them there"
                )
            self._zone = zone
        return self._zone

    def _relative(self, name: str) -> str:
        """`name` as the API names an RRSet: relative to the zone, `@` for the apex."""
        if not in_zone(name, self.zone):
            raise DnsError(f"{self.where}: {name} is not in the zone")
        return "@" if name == self.zone else name[: -len(self.zone) - 1]

    def _rrsets(self, name: str, types: Sequence[str]) -> dict[str, RRSet]:
        """The RRSets of these `types` at `name`, by type (every page)."""
        zone_id = self.zone_info()["id"]
        relative = self._relative(name)
        found: dict[str, RRSet] = {}
        page: int | None = 1
        while page:
            answer = self._request(
                "GET",
                f"/zones/{zone_id}/rrsets",
                f"reading {name}",
                params={"name": relative, "type": list(types), "page": page, "per_page": PER_PAGE},
            )
            for rrset in answer.get("rrsets", []):
                if rrset.get("name") == relative and rrset.get("type") in types:
                    found[rrset["type"]] = rrset
            page = ((answer.get("meta") or {}).get("pagination") or {}).get("next_page")
        return found

    def _current(self, name: str) -> tuple[NameRecords, dict[str, RRSet]]:
        """`name` summarized as `read` returns it, and its RRSets by type (A, AAAA at the
        name; TXT at its mark)."""
        raw = self._rrsets(name, ADDRESS_TYPES)
        marks = self._rrsets(mark_name(name), ("TXT",))
        if "TXT" in marks:
            raw["TXT"] = marks["TXT"]
        default_ttl = self.zone_info().get("ttl")
        addresses = sorted(
            _norm(t, r["value"])
            for t in ADDRESS_TYPES
            if t in raw
            for r in raw[t].get("records", [])
        )
        # an RRSet without its own TTL has the zone's default
        ttls = [int(raw[t].get("ttl") or default_ttl or 0) for t in ADDRESS_TYPES if t in raw]
        texts = [unquote_txt(r["value"]) for r in raw.get("TXT", {}).get("records", [])]
        records = NameRecords(
            name=name,
            addresses=tuple(addresses),
            ttl=max(ttls) if ttls else None,
            marks=tuple(sorted(texts)),
        )
        return records, raw

    # --- the contract -------------------------------------------------------------

    def read(self, names: Sequence[str]) -> Mapping[str, NameRecords]:
        """Each name's A/AAAA values and TTL and its mark's TXT strings, from the API."""
        return {name: self._current(name)[0] for name in names}

    def apply(self, changes: Sequence[NameChange]) -> None:
        """Check every name against its `expect`, then write name by name, what stays
        before what goes (see the module docstring)."""
        current: list[tuple[NameChange, dict[str, RRSet]]] = []
        for change in changes:
            records, raw = self._current(change.name)
            if records != change.expect:
                raise DnsConflict(
                    f"{self.where}: {change.name} changed since it was read (expected "
                    f"{_show(change.expect)}, found {_show(records)}); nothing was written, "
                    "read again"
                )
            current.append((change, raw))
        for change, raw in current:
            self._write(change, raw)

    def _write(self, change: NameChange, raw: dict[str, RRSet]) -> None:
        wanted = _wanted(change)
        for rtype in (*ADDRESS_TYPES, "TXT"):
            if rtype in wanted:
                self._put(change, rtype, raw.get(rtype), *wanted[rtype])
        for rtype in (*ADDRESS_TYPES, "TXT"):  # the mark goes last: a name half removed stays ours
            if rtype in raw and rtype not in wanted:
                self._delete(change, rtype)

    def _path(self, change: NameChange, rtype: str) -> str:
        owner = mark_name(change.name) if rtype == "TXT" else change.name
        return f"/zones/{self.zone_info()['id']}/rrsets/{self._relative(owner)}/{rtype}"

    def _put(
        self, change: NameChange, rtype: str, old: RRSet | None, ttl: int, values: list[str]
    ) -> None:
        """Make one RRSet exactly `values` with `ttl`: in place when it exists, else created."""
        records = [{"value": v} for v in values]
        if old is None:
            owner = mark_name(change.name) if rtype == "TXT" else change.name
            body = {"name": self._relative(owner), "type": rtype, "ttl": ttl, "records": records}
            answer = self._write_call(
                change, "POST", f"/zones/{self.zone_info()['id']}/rrsets", f"creating {rtype}", body
            )
            self._wait(answer.get("action"), f"creating the {rtype} of {change.name}")
            return
        path = self._path(change, rtype)
        if sorted(_norm(rtype, r["value"]) for r in old.get("records", [])) != sorted(
            _norm(rtype, v) for v in values
        ):
            answer = self._write_call(
                change,
                "POST",
                path + "/actions/set_records",
                f"setting {rtype}",
                {"records": records},
            )
            self._wait(answer.get("action"), f"setting the {rtype} of {change.name}")
        if old.get("ttl") != ttl:
            answer = self._write_call(
                change, "POST", path + "/actions/change_ttl", f"changing {rtype} TTL", {"ttl": ttl}
            )
            self._wait(answer.get("action"), f"changing the {rtype} TTL of {change.name}")

    def _delete(self, change: NameChange, rtype: str) -> None:
        answer = self._write_call(change, "DELETE", self._path(change, rtype), f"deleting {rtype}")
        self._wait(answer.get("action"), f"deleting the {rtype} of {change.name}")

    def _write_call(
        self,
        change: NameChange,
        method: str,
        path: str,
        doing: str,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A write for `change`; an RRSet that vanished or appeared meanwhile is a conflict."""
        try:
            return self._request(method, path, f"{doing} of {change.name}", body=body)
        except HetznerApiError as exc:
            if exc.status == 404:
                self._zone = None
                self.zone_info()  # a zone gone altogether is said so, not called a conflict
            if exc.status == 404 or exc.code == "uniqueness_error":
                raise DnsConflict(
                    f"{exc} ({change.name} changed while it was being written; read again)"
                ) from None
            raise

    def _wait(self, action: dict[str, Any] | None, doing: str) -> None:
        """Wait until `action` succeeds, polling it, bounded by `action_deadline`."""
        deadline = time.monotonic() + self.action_deadline
        while action is not None and action.get("status") != "success":
            if action.get("status") == "error":
                error = action.get("error") or {}
                raise DnsError(
                    f"{self.where}: {doing}: action {action.get('id')} failed: "
                    f"{error.get('code', '?')}: {error.get('message', '')}"
                )
            if time.monotonic() >= deadline:
                raise DnsError(
                    f"{self.where}: {doing}: action {action.get('id')} still "
                    f"{action.get('status')} after {self.action_deadline:g}s"
                )
            time.sleep(self.action_poll)
            action = self._request("GET", f"/actions/{action['id']}", doing).get("action")

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()


def _wanted(change: NameChange) -> dict[str, tuple[int, list[str]]]:
    """The RRSets `change` wants, type -> (ttl, values); none when its addresses are empty."""
    if not change.addresses:
        return {}
    wanted: dict[str, tuple[int, list[str]]] = {}
    v4 = sorted(a for a in change.addresses if ":" not in a)
    v6 = sorted(a for a in change.addresses if ":" in a)
    if v4:
        wanted["A"] = (change.ttl, v4)
    if v6:
        wanted["AAAA"] = (change.ttl, v6)
    wanted["TXT"] = (change.ttl, [quote_txt(change.mark)])
    return wanted


def _norm(rtype: str, value: str) -> str:
    """A record value in a form two spellings of the same value share."""
    if rtype in ADDRESS_TYPES:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value  # not ours to judge; compared and shown as the API gave it
    return unquote_txt(value)


def _show(records: NameRecords) -> str:
    if not records.exists:
        return "nothing"
    marks = f", mark {', '.join(records.marks)}" if records.marks else ""
    return f"{', '.join(records.addresses) or 'no address'} ttl {records.ttl}{marks}"
