"""The `rfc2136` driver against real BIND 9 and PowerDNS servers: what it reads is what the
server answers, what it applies the server then answers, atomically, and every refusal,
conflict and silence comes back as the right `DnsError` with a message naming it."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from deploy.dns.base import (
    DnsConflict,
    DnsError,
    DnsRefused,
    DnsUnreachable,
    NameChange,
    NameRecords,
    ZoneAccess,
    mark_name,
)
from deploy.dns.registry import open_zone
from deploy.dns.rfc2136 import Rfc2136Driver, parse_server
from tests.deploy.dns.servers import FOREIGN, FOREIGN_ADDRESS, DnsTestServer

WRONG_SECRET = "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1rZXlzLXNlY3JldA=="


@dataclass
class Zone:
    """One test's server, driver and a name of its own in the shared zone."""

    server: DnsTestServer
    driver: Rfc2136Driver
    name: str

    def answers(self, name: str | None = None) -> tuple[list[str], list[str], list[str]]:
        """What the server itself answers for the name: A, AAAA, mark TXT."""
        name = name or self.name
        return (
            self.server.query(name, "A"),
            self.server.query(name, "AAAA"),
            self.server.query(mark_name(name), "TXT"),
        )

    def create(self, *addresses: str, mark: str = "swapyard:test", ttl: int = 60) -> NameRecords:
        """Give the name these addresses (from nothing) and return what `read` then sees."""
        self.driver.apply([NameChange(self.name, addresses, ttl, mark, NameRecords(self.name))])
        return self.driver.read([self.name])[self.name]


@pytest.fixture
def zone(dns_server: DnsTestServer) -> Iterator[Zone]:
    """A driver on the server and a fresh name; afterwards the foreign record is unchanged."""
    driver = open_zone(dns_server.access())
    assert isinstance(driver, Rfc2136Driver)
    name = f"t{secrets.token_hex(4)}.{dns_server.zone}"
    yield Zone(dns_server, driver, name)
    driver.close()
    assert dns_server.query(f"{FOREIGN}.{dns_server.zone}", "A") == [FOREIGN_ADDRESS]
    assert dns_server.query(f"{FOREIGN}.{dns_server.zone}", "AAAA") == []


def test_server_string_forms() -> None:
    assert parse_server("ns1.example.net") == ("ns1.example.net", 53)
    assert parse_server("192.0.2.53:5353") == ("192.0.2.53", 5353)
    assert parse_server("[::1]:53") == ("::1", 53)
    assert parse_server("[2001:db8::53]") == ("2001:db8::53", 53)
    assert parse_server("::1") == ("::1", 53)
    assert parse_server("2001:db8::53") == ("2001:db8::53", 53)
    for bad, why in [
        ("", "empty"),
        ("host:port", "not a number"),
        ("host:0", "not a number"),
        ("host:70000", "not a number"),
        ("[::1", "closing"),
        ("[::1]53", "':port'"),
        ("[example.net]:53", "not an IPv6"),
        ("fe80::1::2", "not an IPv6"),
        (":53", "no host"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_server(bad)


def test_bad_settings_are_named_before_anything_is_sent() -> None:
    base = ZoneAccess(provider="rfc2136", zone="swapyard.test", server="127.0.0.1:1")
    cases = [
        (ZoneAccess(provider="rfc2136", zone="swapyard.test"), "needs `server`"),
        (ZoneAccess(**{**base.__dict__, "server": "host:x"}), "port 'x'"),
        (ZoneAccess(**{**base.__dict__, "key_name": "k"}), "key_secret is empty"),
        (
            ZoneAccess(**{**base.__dict__, "key_name": "k", "key_secret": "not base64!"}),
            "secret of TSIG key k is not base64",
        ),
        (
            ZoneAccess(**{**base.__dict__, "key_name": "k", "key_secret": WRONG_SECRET,
                          "key_algorithm": "hmac-sha3"}),
            "algorithm 'hmac-sha3' of key k is not supported",
        ),
    ]  # fmt: skip
    for access, message in cases:
        with pytest.raises(DnsError, match=message) as caught:
            open_zone(access)
        assert "swapyard.test" in str(caught.value)
    driver = open_zone(base)
    with pytest.raises(DnsError, match=r"other\.example is not in the zone"):
        driver.read(["app.other.example"])
    too_long = "x" * 64 + ".swapyard.test"
    with pytest.raises(DnsError, match="is not a valid DNS name"):
        driver.read([too_long])
    with pytest.raises(DnsError, match="is not a valid DNS name"):
        driver.apply([NameChange(too_long, ("192.0.2.1",), 60, "m", NameRecords(too_long))])
    with pytest.raises(DnsError, match=r"swapyard\.test: .*'not-an-address'"):
        driver.apply([NameChange("a.swapyard.test", ("not-an-address",), 60, "m",
                                 NameRecords("a.swapyard.test"))])  # fmt: skip


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "HMAC-SHA256.", "hmac-sha512"])
def test_algorithm_names_as_tsig_keygen_writes_them(algorithm: str) -> None:
    access = ZoneAccess(
        provider="rfc2136", zone="swapyard.test", server="127.0.0.1",
        key_name="k", key_secret=WRONG_SECRET, key_algorithm=algorithm,
    )  # fmt: skip
    driver = open_zone(access)
    assert isinstance(driver, Rfc2136Driver)
    assert driver.algorithm.to_text().rstrip(".") == algorithm.lower().rstrip(".")


def test_read_absent_name(zone: Zone) -> None:
    assert zone.driver.read([zone.name]) == {zone.name: NameRecords(zone.name)}
    assert zone.server.lookup(zone.name, "A") == ("NXDOMAIN", [])


def test_read_present_name_sees_what_the_server_holds(zone: Zone) -> None:
    records = zone.driver.read([f"{FOREIGN}.{zone.server.zone}", zone.name])
    foreign = records[f"{FOREIGN}.{zone.server.zone}"]
    assert foreign.addresses == (FOREIGN_ADDRESS,)
    assert foreign.ttl == 300
    assert foreign.marks == ()
    assert not records[zone.name].exists


def test_create_then_the_server_answers_addresses_and_mark(zone: Zone) -> None:
    seen = zone.create("192.0.2.10", "2001:DB8::0:10", "192.0.2.11", mark="owner=swapyard x")
    assert seen == NameRecords(
        zone.name,
        addresses=("192.0.2.10", "192.0.2.11", "2001:db8::10"),
        ttl=60,
        marks=("owner=swapyard x",),
    )
    assert zone.answers() == (["192.0.2.10", "192.0.2.11"], ["2001:db8::10"], ["owner=swapyard x"])


def test_a_long_mark_round_trips(zone: Zone) -> None:
    mark = "heritage=swapyard," + "x" * 600
    assert zone.create("192.0.2.12", mark=mark).marks == (mark,)


def test_replacements_never_show_an_empty_or_mixed_set(zone: Zone) -> None:
    """A poller asking as fast as it can during 20 replacements only ever sees one whole set."""
    sets = [("192.0.2.21", "192.0.2.22"), ("198.51.100.21", "198.51.100.22")]
    zone.create(*sets[0])
    seen: list[tuple[str, tuple[str, ...]]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            rcode, values = zone.server.lookup(zone.name, "A")
            seen.append((rcode, tuple(values)))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        current = zone.driver.read([zone.name])[zone.name]
        for round_ in range(20):
            wanted = sets[(round_ + 1) % 2]
            zone.driver.apply([NameChange(zone.name, wanted, 60, "swapyard:test", current)])
            current = zone.driver.read([zone.name])[zone.name]
            assert current.addresses == wanted
            time.sleep(0.01)  # let the poller see each state
    finally:
        stop.set()
        poller.join(timeout=10)
    bad = [answer for answer in seen if answer not in {("NOERROR", s) for s in sets}]
    assert len(seen) > 100, f"the poller got only {len(seen)} answers"
    assert {values for _, values in seen} == set(sets)
    assert bad == [], f"{len(bad)} of {len(seen)} answers were neither set: {bad[:5]}"


def test_replace_switches_address_families_and_mark(zone: Zone) -> None:
    before = zone.create("192.0.2.30", mark="one")
    zone.driver.apply([NameChange(zone.name, ("2001:db8::30",), 120, "two", before)])
    assert zone.answers() == ([], ["2001:db8::30"], ["two"])
    assert zone.driver.read([zone.name])[zone.name].ttl == 120


def test_delete_removes_addresses_and_mark(zone: Zone) -> None:
    before = zone.create("192.0.2.40", "2001:db8::40")
    zone.driver.apply([NameChange(zone.name, (), 60, "", before)])
    assert zone.answers() == ([], [], [])
    assert zone.server.lookup(zone.name, "A") == ("NXDOMAIN", [])
    assert zone.server.lookup(mark_name(zone.name), "TXT") == ("NXDOMAIN", [])
    assert not zone.driver.read([zone.name])[zone.name].exists


def test_several_names_in_one_update(zone: Zone) -> None:
    other = "www." + zone.name
    empty = zone.driver.read([zone.name, other])
    zone.driver.apply(
        [
            NameChange(zone.name, ("192.0.2.50",), 60, "m1", empty[zone.name]),
            NameChange(other, ("192.0.2.51",), 60, "m2", empty[other]),
        ]
    )
    assert zone.answers() == (["192.0.2.50"], [], ["m1"])
    assert zone.answers(other) == (["192.0.2.51"], [], ["m2"])


def test_wrong_secret_is_refused_and_nothing_changes(zone: Zone) -> None:
    before = zone.create("192.0.2.60", mark="kept")
    wrong = open_zone(zone.server.access(key_secret=WRONG_SECRET))
    change = NameChange(zone.name, ("192.0.2.61",), 60, "lost", before)
    with pytest.raises(DnsRefused) as caught:
        wrong.apply([change])
    message = str(caught.value)
    for part in (zone.server.zone, zone.server.server, zone.server.key_name):
        assert part in message
    with pytest.raises(DnsRefused, match=zone.server.key_name):
        wrong.read([zone.name])
    assert zone.answers() == (["192.0.2.60"], [], ["kept"])


def test_unknown_key_name_is_refused(zone: Zone) -> None:
    before = zone.create("192.0.2.70")
    stranger = open_zone(zone.server.access(key_name="not-a-key-the-server-has"))
    with pytest.raises(DnsRefused, match="not-a-key-the-server-has") as caught:
        stranger.apply([NameChange(zone.name, ("192.0.2.71",), 60, "m", before)])
    assert zone.server.server in str(caught.value)
    assert zone.answers()[0] == ["192.0.2.70"]


def test_unsigned_update_is_refused(zone: Zone) -> None:
    before = zone.create("192.0.2.75")
    unsigned = open_zone(zone.server.access(key_name=None, key_secret=None))
    with pytest.raises(DnsRefused, match="no key"):
        unsigned.apply([NameChange(zone.name, ("192.0.2.76",), 60, "m", before)])
    assert zone.answers()[0] == ["192.0.2.75"]


def test_a_zone_the_server_does_not_serve_is_refused(dns_server: DnsTestServer) -> None:
    driver = open_zone(dns_server.access(zone="elsewhere.test"))
    name = "app.elsewhere.test"
    with pytest.raises(DnsRefused, match="REFUSED") as caught:
        driver.read([name])
    assert "zone elsewhere.test" in str(caught.value)
    assert dns_server.server in str(caught.value)
    with pytest.raises(DnsRefused, match="NOTAUTH"):
        driver.apply([NameChange(name, ("192.0.2.1",), 60, "m", NameRecords(name))])


def test_another_failure_is_named(bind_server: DnsTestServer) -> None:
    """BIND refuses more than 100 records in one set (max-records-per-type) with SERVFAIL."""
    driver = open_zone(bind_server.access())
    name = f"many{secrets.token_hex(3)}.{bind_server.zone}"
    many = tuple(sorted(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(101)))
    with pytest.raises(DnsError, match="SERVFAIL") as caught:
        driver.apply([NameChange(name, many, 60, "m", NameRecords(name))])
    assert type(caught.value) is DnsError
    assert name in str(caught.value)
    assert bind_server.lookup(name, "A") == ("NXDOMAIN", [])


def test_stale_expect_conflicts_and_nothing_is_written(zone: Zone) -> None:
    before = zone.create("192.0.2.80", mark="first")
    other = "www." + zone.name
    stale_cases = [
        NameRecords(zone.name),  # read before the name existed
        NameRecords(zone.name, ("192.0.2.79",), 60, ("first",)),  # another address
        NameRecords(zone.name, ("192.0.2.80", "2001:db8::80"), 60, ("first",)),  # an extra AAAA
    ]
    for stale in stale_cases:
        fresh_other = zone.driver.read([other])[other]
        with pytest.raises(DnsConflict, match=zone.name) as caught:
            zone.driver.apply(
                [
                    NameChange(other, ("192.0.2.81",), 60, "m", fresh_other),
                    NameChange(zone.name, ("192.0.2.82",), 60, "second", stale),
                ]
            )
        assert zone.server.server in str(caught.value)
        assert zone.answers() == (["192.0.2.80"], [], ["first"])
        assert zone.answers(other) == ([], [], [])  # the whole update was dropped
    zone.driver.apply([NameChange(zone.name, ("192.0.2.82",), 60, "second", before)])
    assert zone.answers() == (["192.0.2.82"], [], ["second"])


def test_nothing_listening_is_unreachable_at_once(dns_server: DnsTestServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    driver = open_zone(dns_server.access(server=f"127.0.0.1:{port}", timeout=3))
    started = time.monotonic()
    with pytest.raises(DnsUnreachable, match=f"127.0.0.1:{port}") as caught:
        driver.read([f"x.{dns_server.zone}"])
    assert time.monotonic() - started < 3
    assert dns_server.zone in str(caught.value)
    with pytest.raises(DnsUnreachable, match="refused"):
        driver.apply([NameChange(f"x.{dns_server.zone}", ("192.0.2.1",), 60, "m",
                                 NameRecords(f"x.{dns_server.zone}"))])  # fmt: skip


def test_a_silent_server_times_out_within_the_timeout() -> None:
    """A server that takes the connection and never answers: DnsUnreachable after `timeout`."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        access = ZoneAccess(
            provider="rfc2136", zone="swapyard.test", server=f"127.0.0.1:{port}",
            key_name="k", key_secret=WRONG_SECRET, timeout=1.0,
        )  # fmt: skip
        driver = open_zone(access)
        for call in (
            lambda: driver.read(["a.swapyard.test"]),
            lambda: driver.apply(
                [NameChange("a.swapyard.test", ("192.0.2.1",), 60, "m", NameRecords("a"))]
            ),
        ):
            started = time.monotonic()
            with pytest.raises(DnsUnreachable, match=r"did not answer within 1 s"):
                call()
            assert 0.9 < time.monotonic() - started < 2.5


def test_a_host_name_is_resolved(dns_server: DnsTestServer) -> None:
    driver = open_zone(dns_server.access(server=f"localhost:{dns_server.port}"))
    assert driver.read([f"{FOREIGN}.{dns_server.zone}"])[
        f"{FOREIGN}.{dns_server.zone}"
    ].addresses == (FOREIGN_ADDRESS,)
    missing = open_zone(dns_server.access(server="no-such-host.invalid", timeout=3))
    with pytest.raises(DnsUnreachable, match=r"no-such-host\.invalid"):
        missing.read([f"{FOREIGN}.{dns_server.zone}"])
