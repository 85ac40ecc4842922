"""DNS follows the swap: the engine's DNS steps against real BIND 9 and PowerDNS servers.

Instances come from the memory provider (each gets its own TEST-NET-1
address, as a cloud server gets its own public one); the records are
written by the `rfc2136` driver to a real authoritative server started for
the session (tests/deploy/dns/servers.py) and read back with plain queries
to it. Every test runs against both servers, with names of its own.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from deploy.providers.memory.provider import MemoryApp, MemoryProvider
from deploy.spec import AppCheck, DeploySpec, VolumeSpec
from deploy.swap.engine import SwapEngine
from deploy.swap.journal import SwapState
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.dns.servers import (
    FOREIGN,
    FOREIGN_ADDRESS,
    DnsTestServer,
    nsupdate,
    open_test_dns,
    rfc2136_spec,
)
from tests.deploy.dns.servers import dns_server as dns_server

TTL = 2  # seconds; the schema's minimum is 30, the engine takes what the spec says


class Crash(BaseException):
    """The worker being killed: not an Exception, so no rollback runs."""


class World:
    """A memory provider, a journal and an engine, with DNS on `server` for unique names."""

    def __init__(self, server: DnsTestServer, provider: MemoryProvider, label: str):
        self.server = server
        self.provider = provider
        self.label = label
        self.db = sa.create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        self.crash_after: str | None = None
        self.key_secret = server.key_secret
        self.engine = self.restart()

    def restart(self) -> SwapEngine:
        self.journal = SqlJournal(self.db)
        self.engine = SwapEngine(
            self.provider,
            self.journal,
            health_timeout=2,
            health_interval=0.01,
            drain_seconds=0,
            on_step=self.on_step,
            open_dns=open_test_dns,
        )
        return self.engine

    def on_step(self, _swap_id: int, step: str) -> None:
        if step == self.crash_after:
            self.crash_after = None
            raise Crash(step)

    def name(self, app: str) -> str:
        return f"{app}-{self.label}.{self.server.zone}"

    def spec(self, version: str, *, ttl: int = TTL, extra: tuple[str, ...] = ()) -> DeploySpec:
        checks = (AppCheck("web", self.name("web"), "/"),)
        domains = (self.name("web"), *extra)
        dns = rfc2136_spec(self.server, ttl, key_secret=self.key_secret)
        ignition = json.dumps({"ignition": {"version": "3.4.0"}, "v": version}).encode()
        return DeploySpec(
            "p",
            self.label,
            f"{version:0<12}",
            ignition,
            checks,
            VolumeSpec(f"sy-p-{self.label}", "d", 1),
            domains,
            dns,
        )

    def live(self) -> str:
        current = self.journal.current("p", self.label)
        assert current is not None
        return current.instance_id

    def address_of(self, instance_id: str) -> list[str]:
        inst = self.provider.get_instance(instance_id)
        assert inst is not None
        return list(self.provider.dns_addresses(inst))

    def resolves(self, app: str = "web") -> list[str]:
        return self.server.query(self.name(app), "A")

    def mark(self, app: str = "web") -> list[str]:
        return self.server.query(f"_swapyard.{self.name(app)}", "TXT")


@pytest.fixture
def world(dns_server: DnsTestServer) -> Iterator[World]:
    label = secrets.token_hex(3)
    provider = MemoryProvider(ex_apps=(MemoryApp("web", (f"web-{label}.{dns_server.zone}",)),))
    try:
        yield World(dns_server, provider, label)
    finally:
        provider.ex_close()


def test_a_first_deploy_writes_the_records_and_their_mark(world):
    result = world.engine.deploy(world.spec("a"))
    assert result.status == "success", result.summary
    assert world.resolves() == world.address_of(world.live())
    assert world.mark() == [
        f"heritage=swapyard,swapyard/owner=test-owner,swapyard/instance=p/{world.label}"
    ]
    steps = world.journal.steps(result.swap_id)
    detail = next(s.detail for s in steps if s.step == "update_dns")
    assert detail.startswith(f"+ {world.name('web')} 192.0.2.")


def test_a_swap_moves_the_records_and_no_query_in_between_finds_nothing(world):
    world.engine.deploy(world.spec("a"))
    old, old_address = world.live(), world.resolves()
    answers: list[tuple[str, list[str]]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            answers.append(world.server.lookup(world.name("web"), "A"))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = world.engine.deploy(world.spec("b"))
    finally:
        stop.set()
        poller.join()
    assert result.status == "success", result.summary
    new = world.live()
    assert new != old and world.resolves() == world.address_of(new) != old_address
    assert len(answers) > 10
    assert {rcode for rcode, _ in answers} == {"NOERROR"}
    assert {tuple(v) for _, v in answers} == {tuple(old_address), tuple(world.address_of(new))}
    assert "served until" in result.summary


def test_the_old_instance_is_destroyed_only_after_the_old_records_ttl(world):
    world.engine.deploy(world.spec("a"))
    old = world.live()
    told: list[tuple[str, bool]] = []
    result = world.engine.deploy(
        world.spec("b"),
        on_drain=lambda text: told.append((text, world.provider.get_instance(old) is not None)),
    )
    [(text, old_still_there)] = told
    assert old_still_there and f"the old instance {old} serves until" in text
    steps = {s.step: s for s in world.journal.steps(result.swap_id)}
    moved = steps["update_dns"].finished
    destroyed = steps["destroy_old"].started
    assert moved is not None and (destroyed - moved).total_seconds() >= TTL - 0.05


def test_a_wrong_tsig_key_fails_before_traffic_moves_and_leaves_the_records(world):
    world.engine.deploy(world.spec("a"))
    old = world.live()
    before = world.resolves()
    world.key_secret = "d3Jvbmcgc2VjcmV0IGZvciB0aGUga2V5IG9mIHRoZSB0ZXN0"
    result = world.engine.deploy(world.spec("b"))
    assert result.status == "failure", result.summary
    assert "update_dns" not in world.journal.get(result.swap_id).done
    assert world.live() == old and world.resolves() == before
    assert [r.instance_id for r in world.provider.routes()] == [old]
    assert [i.id for i in world.provider.list_instances()] == [old]
    assert world.server.key_name in result.summary or "TSIG" in result.summary.upper()


def test_a_name_that_is_not_swapyards_is_reported_and_left_alone(world):
    foreign = f"{FOREIGN}.{world.server.zone}"
    result = world.engine.deploy(world.spec("a", extra=(foreign,)))
    assert result.status == "success", result.summary
    assert world.server.query(foreign, "A") == [FOREIGN_ADDRESS]
    assert world.server.query(f"_swapyard.{foreign}", "TXT") == []
    assert f"{foreign} already exists" in result.summary
    assert world.resolves() == world.address_of(world.live())


def test_a_failure_after_the_dns_change_puts_the_records_back(world):
    world.engine.deploy(world.spec("a"))
    old, before = world.live(), world.resolves()
    world.provider.ex_fail("switch_traffic")
    result = world.engine.deploy(world.spec("b"))
    assert result.status == "failure", result.summary
    done = world.journal.get(result.swap_id).done
    assert "update_dns" in done and "rollback:restore_dns" in done
    assert world.live() == old and world.resolves() == before == world.address_of(old)


def test_a_crash_after_the_dns_change_is_rolled_back_with_the_records(world):
    world.engine.deploy(world.spec("a"))
    old, before = world.live(), world.resolves()
    world.crash_after = "update_dns"
    with pytest.raises(Crash):
        world.engine.deploy(world.spec("b"))
    assert world.resolves() != before  # the change was sent before the crash
    (result,) = world.restart().recover()
    assert result.status == "failure" and "stopped after update_dns" in result.summary
    assert world.live() == old and world.resolves() == before


def test_a_crash_after_the_switch_completes_after_the_ttl(world):
    world.engine.deploy(world.spec("a"))
    old = world.live()
    world.crash_after = "switch_traffic"
    with pytest.raises(Crash):
        world.engine.deploy(world.spec("b"))
    new = world.live()
    assert world.provider.get_instance(old) is not None  # not destroyed yet
    (result,) = world.restart().recover()
    assert result.status == "success", result.summary
    assert world.provider.get_instance(old) is None
    assert world.resolves() == world.address_of(new)
    assert [i.id for i in world.provider.list_instances()] == [new]


def test_a_restart_does_not_wait_for_the_ttl_but_a_thread_finishes_the_swap(world):
    world.engine.deploy(world.spec("a", ttl=8))  # the TTL the old records have in the swap
    old = world.live()
    world.crash_after = "switch_traffic"
    with pytest.raises(Crash):
        world.engine.deploy(world.spec("b", ttl=8))
    (result,) = world.restart().recover(wait_drain=False)
    assert result.status == "success" and f"the old instance {old} serves until" in result.summary
    assert world.provider.get_instance(old) is not None  # recover() did not wait
    assert world.journal.locks() != []  # the swap holds the lock until it is complete
    deadline = time.monotonic() + 60
    while world.journal.unfinished() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert world.journal.unfinished() == [] and world.journal.locks() == []
    assert world.provider.get_instance(old) is None
    assert world.resolves() == world.address_of(world.live())


def test_a_dns_only_change_rewrites_the_records_without_a_swap(world):
    world.engine.deploy(world.spec("a"))
    live = world.live()
    result = world.engine.deploy(world.spec("a", ttl=TTL + 40))
    assert result.status == "success" and result.action == "dns-only", result.summary
    assert world.live() == live
    _, values = world.server.lookup(world.name("web"), "A")
    assert values == world.address_of(live)
    steps = [s.step for s in world.journal.steps(result.swap_id)]
    assert steps == ["update_dns"]
    again = world.engine.deploy(world.spec("a", ttl=TTL + 40))
    assert again.status == "noop", again.summary


def test_records_removed_by_hand_are_written_again_on_the_next_push(world):
    world.engine.deploy(world.spec("a"))
    nsupdate(world.server, f"update delete {world.name('web')}. A")
    assert world.resolves() == []
    result = world.engine.deploy(world.spec("a"))
    assert result.action == "dns-only", result.summary
    assert world.resolves() == world.address_of(world.live())


def test_a_domain_dropped_in_a_swap_loses_its_records(world):
    extra = world.name("old")
    world.engine.deploy(world.spec("a", extra=(extra,)))
    assert world.server.query(extra, "A")
    world.engine.deploy(world.spec("b"))
    assert world.server.query(extra, "A") == []
    assert world.server.query(f"_swapyard.{extra}", "TXT") == []


def test_destroy_removes_the_records_it_owns(world):
    spec = world.spec("a")
    world.engine.deploy(spec)
    result = world.engine.destroy("p", world.label, dns=spec.dns)
    assert result.status == "success", result.summary
    assert world.resolves() == [] and world.mark() == []
    assert world.journal.get(result.swap_id).state == SwapState.SUCCEEDED


def test_a_deploy_without_an_address_for_the_records_fails_before_traffic_moves(world):
    world.engine.deploy(world.spec("a"))
    old, before = world.live(), world.resolves()
    world.provider.dns_addresses = lambda instance: ()  # type: ignore[method-assign]
    result = world.engine.deploy(world.spec("b"))
    assert result.status == "failure" and "EDGE_ADDRESSES" in result.summary
    assert world.live() == old and world.resolves() == before
    del world.provider.dns_addresses
