"""Route 53 DNS driver: one public hosted zone's address records through the AWS API.

Route 53 has the two things the driver contract wants: a change batch is
applied atomically (all of it or none), and a DELETE succeeds only when it
names a record set exactly as it stands (name, type, TTL and every value).
So `apply` sends one batch for all names, each name's old record sets
deleted exactly and its new ones created in the same batch: a name never
resolves to nothing, and a zone that moved on since `read` makes Route 53
refuse the whole batch (`DnsConflict`).

Just before the batch, `apply` reads the names again and compares them with
each change's `expect`: that finds the exact TTLs to delete with (the
`NameRecords` summary keeps only the largest), and refuses early and
clearly when the zone already differs. The batch's exact DELETE still guards
the moment between that read and the write.

The hosted zone is found by name (exactly one public zone), its id cached.
boto3 is imported here only, when the driver is opened.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from deploy.dns.base import (
    DnsConflict,
    DnsDriver,
    DnsError,
    DnsRefused,
    DnsUnreachable,
    NameChange,
    NameRecords,
    ZoneAccess,
    mark_name,
)
from deploy.dns.txt import quote_txt, unquote_txt

PUBLIC_ENDPOINT = "https://route53.amazonaws.com"
# Route 53's words when a DELETE or CREATE does not match the zone as it stands
MOVED_ON = re.compile(r"was not found|already exists|do not match the current values")
ADDRESS_TYPES = ("A", "AAAA")
REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "UnrecognizedClient",
        "ExpiredToken",
        "InvalidSignatureException",
    }
)
UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)

RecordSet = dict[str, Any]


class Route53Driver(DnsDriver):
    """A Route 53 public hosted zone (or a compatible API at `access.endpoint`)."""

    name = "route53"
    sync_deadline = 180.0  # seconds a change may take to reach INSYNC
    sync_poll = 2.0

    def __init__(self, access: ZoneAccess):
        super().__init__(access)
        self.endpoint = access.endpoint or PUBLIC_ENDPOINT
        config = Config(
            region_name="us-east-1",
            connect_timeout=access.timeout,
            read_timeout=access.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        credentials: dict[str, str] = {}
        if access.access_key_id and access.secret_access_key:
            credentials = {
                "aws_access_key_id": access.access_key_id,
                "aws_secret_access_key": access.secret_access_key,
            }
        self.client: Any = boto3.session.Session().client(
            "route53",
            endpoint_url=access.endpoint or None,
            config=config,
            **credentials,
        )
        self._zone_id: str | None = None

    # --- errors -----------------------------------------------------------------

    def _fail(self, doing: str, exc: Exception) -> DnsError:
        """The `DnsError` for `exc`, raised while `doing`, naming the zone and the endpoint."""
        where = f"Route 53 zone {self.zone} at {self.endpoint}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error") or {}
            if not error.get("Code"):  # some compatible servers wrap it as Errors/Error
                error = (exc.response.get("Errors") or {}).get("Error") or error
            code = error.get("Code") or "?"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = f"{where}: {doing} failed: HTTP {status} {code}: {error.get('Message', '')}"
            if code in REFUSED_CODES or (code == "?" and status in (401, 403)):
                return DnsRefused(message + " (check the access key and its permissions)")
            # InvalidChangeBatch is also Route 53's answer to a malformed value; only the
            # exact-match refusals mean the zone moved on
            if code == "InvalidChangeBatch" and MOVED_ON.search(message):
                return DnsConflict(message + " (the zone changed since it was read; read again)")
            return DnsError(message)
        if isinstance(exc, UNREACHABLE):
            return DnsUnreachable(f"{where}: {doing}: no answer: {exc}")
        if isinstance(exc, NoCredentialsError):
            return DnsError(
                f"{where}: {doing}: no AWS credentials (give access_key_id and "
                "secret_access_key, or configure boto3's usual credential chain)"
            )
        return DnsError(f"{where}: {doing} failed: {exc}")

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(doing, exc) from None

    # --- the zone ---------------------------------------------------------------

    def zone_id(self) -> str:
        """The hosted zone's id, found by name once: exactly one public zone named `zone.`."""
        if self._zone_id is None:
            fqdn = self.zone + "."
            answer = self._call(
                "finding the hosted zone", "list_hosted_zones_by_name", DNSName=fqdn, MaxItems="20"
            )
            found = [
                z
                for z in answer.get("HostedZones", [])
                if z["Name"].lower() == fqdn and not z.get("Config", {}).get("PrivateZone")
            ]
            where = f"Route 53 at {self.endpoint}"
            if not found:
                raise DnsError(f"{where}: no public hosted zone named {fqdn} (create it first)")
            if len(found) > 1:
                ids = ", ".join(z["Id"] for z in found)
                raise DnsError(
                    f"{where}: {len(found)} public hosted zones are named {fqdn} ({ids}); "
                    "keep one, swapyard cannot tell which is delegated"
                )
            self._zone_id = found[0]["Id"].rsplit("/", 1)[-1]
        return self._zone_id

    def _record_sets(self, name: str, types: Sequence[str]) -> dict[str, RecordSet]:
        """The record sets of these `types` at `name`, by type (one list call, from `name`)."""
        fqdn = name + "."
        answer = self._call(
            f"reading {name}",
            "list_resource_record_sets",
            HostedZoneId=self.zone_id(),
            StartRecordName=fqdn,
            StartRecordType=types[0],
            MaxItems="10",
        )
        found: dict[str, RecordSet] = {}
        for rrset in answer.get("ResourceRecordSets", []):
            if rrset["Name"].lower() != fqdn or rrset["Type"] not in types:
                continue
            if "AliasTarget" in rrset or "SetIdentifier" in rrset:
                raise DnsError(
                    f"Route 53 zone {self.zone} at {self.endpoint}: {name} has an alias or "
                    f"routing-policy {rrset['Type']} record, which swapyard does not manage"
                )
            found[rrset["Type"]] = rrset
        return found

    def _current(self, name: str) -> tuple[NameRecords, dict[str, RecordSet]]:
        """`name` summarized as `read` returns it, and its raw record sets by type
        (A, AAAA at the name; TXT at its mark)."""
        raw = self._record_sets(name, ADDRESS_TYPES)
        marks = self._record_sets(mark_name(name), ("TXT",))
        if "TXT" in marks:
            raw["TXT"] = marks["TXT"]
        addresses = sorted(
            r["Value"] for t in ADDRESS_TYPES if t in raw for r in raw[t]["ResourceRecords"]
        )
        ttls = [raw[t]["TTL"] for t in ADDRESS_TYPES if t in raw]
        txt = raw.get("TXT", {}).get("ResourceRecords", [])
        records = NameRecords(
            name=name,
            addresses=tuple(addresses),
            ttl=max(ttls) if ttls else None,
            marks=tuple(sorted(unquote_txt(r["Value"]) for r in txt)),
        )
        return records, raw

    # --- the contract -------------------------------------------------------------

    def read(self, names: Sequence[str]) -> Mapping[str, NameRecords]:
        """Each name's A/AAAA values and TTL and its mark's TXT strings, from Route 53."""
        return {name: self._current(name)[0] for name in names}

    def apply(self, changes: Sequence[NameChange]) -> None:
        """One atomic change batch for all `changes`, then wait until it is INSYNC."""
        batch: list[dict[str, Any]] = []
        for change in changes:
            records, raw = self._current(change.name)
            if records != change.expect:
                raise DnsConflict(
                    f"Route 53 zone {self.zone} at {self.endpoint}: {change.name} changed since "
                    f"it was read (expected {_show(change.expect)}, found {_show(records)}); "
                    "nothing was written, read again"
                )
            batch.extend(_changes_for(change, raw))
        if not batch:
            return
        self._submit(batch)

    def _submit(self, batch: list[dict[str, Any]]) -> None:
        """Send one change batch and wait for it to be INSYNC, bounded by `sync_deadline`."""
        answer = self._call(
            "changing record sets",
            "change_resource_record_sets",
            HostedZoneId=self.zone_id(),
            ChangeBatch={"Comment": "swapyard", "Changes": batch},
        )
        info = answer["ChangeInfo"]
        deadline = time.monotonic() + self.sync_deadline
        while info["Status"] != "INSYNC":
            if time.monotonic() >= deadline:
                raise DnsError(
                    f"Route 53 zone {self.zone} at {self.endpoint}: change {info['Id']} was "
                    f"accepted but is still {info['Status']} after {self.sync_deadline:.0f}s"
                )
            time.sleep(self.sync_poll)
            info = self._call("waiting for the change", "get_change", Id=info["Id"])["ChangeInfo"]

    def close(self) -> None:
        """Close the boto3 client's connections."""
        self.client.close()


def _wanted(change: NameChange) -> dict[str, RecordSet]:
    """The record sets `change` wants, by type; none when its addresses are empty."""
    if not change.addresses:
        return {}
    wanted: dict[str, RecordSet] = {}
    for rtype, values in (
        ("A", [a for a in change.addresses if ":" not in a]),
        ("AAAA", [a for a in change.addresses if ":" in a]),
    ):
        if values:
            wanted[rtype] = _rrset(change.name, rtype, change.ttl, sorted(values))
    wanted["TXT"] = _rrset(mark_name(change.name), "TXT", change.ttl, [quote_txt(change.mark)])
    return wanted


def _rrset(name: str, rtype: str, ttl: int, values: list[str]) -> RecordSet:
    return {
        "Name": name + ".",
        "Type": rtype,
        "TTL": ttl,
        "ResourceRecords": [{"Value": v} for v in values],
    }


def _same(a: RecordSet, b: RecordSet) -> bool:
    values = sorted(r["Value"] for r in a["ResourceRecords"])
    return a["TTL"] == b["TTL"] and values == sorted(r["Value"] for r in b["ResourceRecords"])


def _changes_for(change: NameChange, raw: dict[str, RecordSet]) -> list[dict[str, Any]]:
    """DELETE of each current record set that must go or change (exactly as read),
    CREATE of each new one; a record set already as wanted is left alone."""
    wanted = _wanted(change)
    out: list[dict[str, Any]] = []
    for rtype in (*ADDRESS_TYPES, "TXT"):
        old, new = raw.get(rtype), wanted.get(rtype)
        if old is not None and new is not None and _same(old, new):
            continue
        if old is not None:
            exact = {k: old[k] for k in ("Name", "Type", "TTL", "ResourceRecords")}
            out.append({"Action": "DELETE", "ResourceRecordSet": exact})
        if new is not None:
            out.append({"Action": "CREATE", "ResourceRecordSet": new})
    return out


def _show(records: NameRecords) -> str:
    if not records.exists:
        return "nothing"
    marks = f", mark {', '.join(records.marks)}" if records.marks else ""
    return f"{', '.join(records.addresses) or 'no address'} ttl {records.ttl}{marks}"
