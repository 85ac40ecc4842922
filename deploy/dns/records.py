"""Which address records swapyard keeps for an instance, and the change that puts them there.

An instance with a `dns:` block other than `none` has a `DnsSpec`: the block
as journaled (secret references, never their values), its TTL, and the
owner id of this swapyard installation (setting DNS_OWNER). Its domains
resolve to the addresses of the instance that serves them
(`Provider.dns_addresses`).

Ownership works the way external-dns keeps its registry: beside each name
swapyard writes, a TXT record at `_swapyard.<name>` (`base.mark_name`)
says who wrote it: `heritage=swapyard,swapyard/owner=<owner>,
swapyard/instance=<project>/<name>`. A name is swapyard's to change only
when it carries exactly that mark, or when nothing exists at it yet. A
name that exists without the mark (written by hand, by another tool, by
another installation or another instance) is left alone and reported:
`RecordChange.foreign` says why, and the deploy's summary shows it.

`plan_records` reads the names once and returns the change; the swap
journals `RecordChange.before` before applying it, so a rollback (or a
recovery after a crash) can put back exactly what was there
(`restore_changes`), for the names swapyard changed and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy.dns.base import DnsDriver, NameChange, NameRecords, in_zone

HERITAGE = "heritage=swapyard"


@dataclass(frozen=True)
class DnsSpec:
    """The DNS part of a deploy: where the zone is (journaled settings), TTL and owner.

    `settings` holds the instance's `dns:` block as the journal may keep it:
    secret fields as `secret:NAME`, resolved only when a driver is opened.
    """

    settings: Mapping[str, Any]
    owner: str = "swapyard"

    @property
    def zone(self) -> str:
        """The zone every record is written in."""
        return str(self.settings["zone"])

    @property
    def ttl(self) -> int:
        """TTL of the records written."""
        return int(self.settings["ttl"])

    @property
    def provider(self) -> str:
        """The DNS driver's name (`rfc2136`, `route53`, `hetzner`)."""
        return str(self.settings["provider"])

    def mark(self, instance_key: str) -> str:
        """The ownership TXT value of the names `instance_key` (project/name) serves."""
        return f"{HERITAGE},swapyard/owner={self.owner},swapyard/instance={instance_key}"

    def to_json(self) -> dict[str, Any]:
        """What the journal keeps (no secret values)."""
        return {"settings": dict(self.settings), "owner": self.owner}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DnsSpec | None:
        """The spec `to_json` wrote, or None when the deploy had no DNS."""
        if not data:
            return None
        return cls(dict(data["settings"]), str(data.get("owner", "swapyard")))


def _holder(marks: tuple[str, ...]) -> str:
    """Who a name's marks say holds it, for messages."""
    for mark in marks:
        parts = dict(p.split("=", 1) for p in mark.split(",") if "=" in p)
        if parts.get("heritage") == "swapyard":
            owner = parts.get("swapyard/owner", "?")
            instance = parts.get("swapyard/instance", "?")
            return f"swapyard instance {instance} of owner {owner!r}"
    return "records swapyard did not write"


@dataclass(frozen=True)
class RecordChange:
    """What one DNS step writes: `changes`, what their names held `before`, what it left alone.

    `foreign` are messages for names that exist without this instance's mark.
    """

    changes: tuple[NameChange, ...]
    before: Mapping[str, NameRecords] = field(default_factory=dict)
    foreign: tuple[str, ...] = ()

    @property
    def moved_ttl(self) -> int:
        """The longest TTL of address records this change replaced or removed (0: none), how
        long resolvers may still send clients to the old addresses."""
        return max(
            (
                c.expect.ttl or 0
                for c in self.changes
                if c.expect.addresses and c.expect.addresses != c.addresses
            ),
            default=0,
        )

    def describe(self) -> str:
        """One line per written name, then what was left alone."""
        lines = []
        for c in self.changes:
            if not c.addresses:
                lines.append(f"- {c.name} (was {', '.join(c.expect.addresses) or 'a mark'})")
            elif c.expect.addresses:
                lines.append(
                    f"~ {c.name} {', '.join(c.expect.addresses)} -> {', '.join(c.addresses)}"
                )
            else:
                lines.append(f"+ {c.name} {', '.join(c.addresses)} (ttl {c.ttl})")
        lines.extend(f"! {text}" for text in self.foreign)
        return "\n".join(lines) or "records already up to date"

    def before_json(self) -> dict[str, Any]:
        """`before` as the journal keeps it."""
        return {
            name: {"addresses": list(r.addresses), "ttl": r.ttl, "marks": list(r.marks)}
            for name, r in self.before.items()
        }


def before_from_json(data: Mapping[str, Any]) -> dict[str, NameRecords]:
    """`RecordChange.before_json`, read back."""
    return {
        name: NameRecords(name, tuple(r["addresses"]), r["ttl"], tuple(r["marks"]))
        for name, r in data.items()
    }


def plan_records(
    driver: DnsDriver,
    mark: str,
    want: Mapping[str, tuple[str, ...]],
    ttl: int,
    remove: Iterable[str] = (),
) -> RecordChange:
    """The change that makes each name of `want` resolve to its addresses and deletes the
    names of `remove` that carry `mark`, touching no name without it.

    Names outside the driver's zone are reported in `foreign` and left alone.
    """
    gone = [n for n in dict.fromkeys(remove) if n not in want]
    names = [n for n in (*want, *gone) if in_zone(n, driver.zone)]
    outside = [n for n in (*want, *gone) if not in_zone(n, driver.zone)]
    current = driver.read(names) if names else {}
    changes, before, foreign = [], {}, [f"{n} is not in zone {driver.zone}" for n in outside]
    for name in names:
        rec = current.get(name, NameRecords(name))
        ours = mark in rec.marks
        addresses = tuple(sorted(want.get(name, ())))
        if rec.exists and not ours:
            if name in want:
                foreign.append(
                    f"{name} already exists in {driver.zone} ({_holder(rec.marks)}); "
                    "left alone: remove it there, or take the domain out of this instance"
                )
            continue
        if name in want:
            if ours and rec.addresses == addresses and rec.ttl == ttl:
                continue
        elif not rec.exists:
            continue
        changes.append(NameChange(name, addresses, ttl, mark, rec))
        before[name] = rec
    return RecordChange(tuple(changes), before, tuple(foreign))


def restore_changes(
    driver: DnsDriver, mark: str, before: Mapping[str, NameRecords], ttl: int
) -> RecordChange:
    """The change that puts back what `before` held at each name still carrying `mark`
    (names someone else took meanwhile are left alone)."""
    current = driver.read(list(before)) if before else {}
    changes = []
    for name, old in before.items():
        rec = current.get(name, NameRecords(name))
        if rec.exists and mark not in rec.marks:
            continue
        if rec.addresses == old.addresses and rec.marks == old.marks:
            continue
        changes.append(NameChange(name, old.addresses, old.ttl or ttl, mark, rec))
    return RecordChange(tuple(changes), {c.name: c.expect for c in changes})
