"""DNS drivers: the address records of one zone, read and replaced atomically.

A driver (`DnsDriver`) is bound to one zone, built from a `ZoneAccess` (the
instance's `dns:` block with its secrets' values). It knows three things
and nothing about swaps or ownership:

- `read(names)`: for each name, its A and AAAA values, their TTL, and the
  TXT values at its mark name (`mark_name`), as the zone's authority holds
  them now (the primary server, the provider's API; never a cache);
- `apply(changes)`: make each name's A/AAAA records exactly the change's
  addresses and its mark exactly the change's mark, or delete both when
  the addresses are empty. A name never resolves to nothing or to both
  sets in between: one RFC 2136 UPDATE, one Route 53 change batch, or for
  an API without batches, records updated in place and created before
  anything is deleted. Each change carries what `read` returned before it
  (`expect`); a driver that can make the write conditional on it (RFC 2136
  prerequisites, Route 53's exact DELETE) does, and raises `DnsConflict`
  when the zone moved on meanwhile;
- errors as `DnsError` subclasses whose message names the zone, the server
  or API, and the answer it gave (`DnsRefused` for a key or token the
  server does not accept, `DnsUnreachable` when it does not answer).

Ownership (which names swapyard may change) is decided above the drivers,
in `deploy.dns.records`: a driver writes whatever it is told.

Names are fully qualified, lower case, without the trailing dot; addresses
are IPv4 or IPv6 text in `ipaddress` canonical form. Every network call is
bounded by `ZoneAccess.timeout`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from deploy.providers.types import DeployError

MARK_PREFIX = "_swapyard"


def mark_name(name: str) -> str:
    """Where the ownership TXT of `name` lives: `_swapyard.<name>` (external-dns keeps its
    registry beside the record the same way, so a CNAME-free name needs no TXT of its own)."""
    return f"{MARK_PREFIX}.{name}"


def in_zone(name: str, zone: str) -> bool:
    """True when `name` is `zone` itself or below it."""
    return name == zone or name.endswith("." + zone)


@dataclass(frozen=True)
class ZoneAccess:
    """How to reach one zone's authority: the `dns:` block of an instance, secrets resolved.

    Which fields a driver reads is its own business (`rfc2136`: server, key_*;
    `route53`: access_key_id, secret_access_key, endpoint; `hetzner`: token,
    endpoint). `endpoint` replaces a public API's base URL (a compatible
    service, a test server).
    """

    provider: str
    zone: str
    server: str | None = None  # host or host:port (an IPv6 literal in brackets)
    key_name: str | None = None
    key_algorithm: str = "hmac-sha256"
    key_secret: str | None = None  # base64, as `tsig-keygen` prints it
    token: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    endpoint: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class NameRecords:
    """What the zone holds at one name, as far as swapyard cares.

    `addresses` are the A and AAAA values, sorted; `ttl` is theirs (the
    largest, should they differ; None when there are none); `marks` are the
    TXT strings at `mark_name(name)`, each TXT record's strings joined.
    """

    name: str
    addresses: tuple[str, ...] = ()
    ttl: int | None = None
    marks: tuple[str, ...] = ()

    @property
    def exists(self) -> bool:
        """True when the name has address records or a mark."""
        return bool(self.addresses or self.marks)


@dataclass(frozen=True)
class NameChange:
    """One name's wanted state: these addresses with this TTL and mark, or gone (no addresses).

    `expect` is the name as `read` returned it before the change was decided.
    """

    name: str
    addresses: tuple[str, ...]
    ttl: int
    mark: str
    expect: NameRecords


class DnsError(DeployError):
    """A DNS read or update failed; the message names the zone, the authority and its answer."""


class DnsRefused(DnsError, PermissionError):
    """The authority refused the credentials (a TSIG key it does not know or whose secret
    differs, a token without access, an update not allowed for this key)."""


class DnsUnreachable(DnsError, ConnectionError):
    """The authority did not answer in time, or refused the connection."""


class DnsConflict(DnsError):
    """The zone changed between `read` and `apply`: nothing was written; read again."""


class DnsDriver:
    """Base class of DNS drivers; see the module docstring for the contract."""

    name: ClassVar[str] = "base"

    def __init__(self, access: ZoneAccess):
        self.access = access
        self.zone = access.zone

    def read(self, names: Sequence[str]) -> Mapping[str, NameRecords]:
        """Every name's records and mark as the authority holds them now (absent names empty)."""
        raise NotImplementedError(f"read not implemented for the {self.name} DNS driver")

    def apply(self, changes: Sequence[NameChange]) -> None:
        """Write `changes`, each name atomically (see the module docstring)."""
        raise NotImplementedError(f"apply not implemented for the {self.name} DNS driver")

    def close(self) -> None:
        """Release connections and sessions; the base holds none."""
