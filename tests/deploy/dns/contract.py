"""Behaviour shared by the API DNS drivers (route53, hetzner): `ApiDriverContract`.

A test class subclasses it and supplies these fixtures, all against a real
server the test session started:

- `zone`: a fresh, empty zone's name for this test (no two tests share one);
- `driver`: a `DnsDriver` bound to `zone`;
- `outside`: an `Outside` for that zone, writing and listing records straight
  through the server's API, as another party (a person, another tool) would.

- `unknown_zone_driver`: a driver for a zone the server does not have;
- `unreachable_driver`: one whose endpoint refuses connections;
- `silent_driver`: one whose endpoint accepts connections and never answers
  (`silent_endpoint` below), with a 1 second timeout.

The tests change only names below `zone`; each asserts what the server holds
afterwards, read through `outside`, not only through the driver.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import pytest

from deploy.dns.base import (
    DnsConflict,
    DnsDriver,
    DnsError,
    DnsUnreachable,
    NameChange,
    NameRecords,
    mark_name,
)

MARK = 'swapyard instance="blog" owner=swapyard'


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """`host:port` of a loopback server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


class Outside(Protocol):
    """Another party's access to the zone, beside the driver."""

    def put(self, name: str, rtype: str, values: list[str], ttl: int = 300) -> None:
        """Create or replace the record set (`values` in the API's own text form)."""
        ...

    def types(self, name: str) -> dict[str, list[str]]:
        """Every record set at `name`: type -> sorted values, as the API lists them."""
        ...


def change(
    name: str, addresses: tuple[str, ...], expect: NameRecords, ttl: int = 300, mark: str = MARK
) -> NameChange:
    return NameChange(name=name, addresses=addresses, ttl=ttl, mark=mark, expect=expect)


class ApiDriverContract:
    """What every API driver must do; see the module docstring for the fixtures."""

    def test_read_absent_name_is_empty(self, driver: DnsDriver, zone: str) -> None:
        name = f"www.{zone}"
        assert driver.read([name]) == {name: NameRecords(name=name)}

    def test_create_then_read(self, driver: DnsDriver, zone: str, outside: Outside) -> None:
        name = f"www.{zone}"
        driver.apply([change(name, ("192.0.2.10", "2001:db8::10"), NameRecords(name=name))])
        got = driver.read([name])[name]
        assert got == NameRecords(
            name=name, addresses=("192.0.2.10", "2001:db8::10"), ttl=300, marks=(MARK,)
        )
        listed = outside.types(name)
        assert listed["A"] == ["192.0.2.10"]
        assert listed["AAAA"] == ["2001:db8::10"]
        assert set(outside.types(mark_name(name))) == {"TXT"}

    def test_apex_name(self, driver: DnsDriver, zone: str) -> None:
        driver.apply([change(zone, ("192.0.2.1",), NameRecords(name=zone))])
        assert driver.read([zone])[zone].addresses == ("192.0.2.1",)

    def test_replace_leaves_only_the_new_set(
        self, driver: DnsDriver, zone: str, outside: Outside
    ) -> None:
        name = f"app.{zone}"
        driver.apply([change(name, ("192.0.2.1", "192.0.2.2"), NameRecords(name=name))])
        before = driver.read([name])[name]
        driver.apply([change(name, ("2001:db8::7",), before, ttl=60, mark=MARK + " v2")])
        assert driver.read([name])[name] == NameRecords(
            name=name, addresses=("2001:db8::7",), ttl=60, marks=(MARK + " v2",)
        )
        assert outside.types(name) == {"AAAA": ["2001:db8::7"]}

    def test_several_names_in_one_apply(self, driver: DnsDriver, zone: str) -> None:
        one, two = f"one.{zone}", f"two.{zone}"
        driver.apply(
            [
                change(one, ("192.0.2.1",), NameRecords(name=one)),
                change(two, ("192.0.2.2",), NameRecords(name=two)),
            ]
        )
        got = driver.read([one, two])
        assert got[one].addresses == ("192.0.2.1",)
        assert got[two].addresses == ("192.0.2.2",)

    def test_delete_removes_addresses_and_mark(
        self, driver: DnsDriver, zone: str, outside: Outside
    ) -> None:
        name = f"old.{zone}"
        driver.apply([change(name, ("192.0.2.5", "2001:db8::5"), NameRecords(name=name))])
        current = driver.read([name])[name]
        driver.apply([change(name, (), current)])
        assert driver.read([name])[name] == NameRecords(name=name)
        assert outside.types(name) == {}
        assert outside.types(mark_name(name)) == {}

    def test_stale_expect_is_a_conflict_and_writes_nothing(
        self, driver: DnsDriver, zone: str, outside: Outside
    ) -> None:
        name = f"web.{zone}"
        driver.apply([change(name, ("192.0.2.1",), NameRecords(name=name))])
        seen = driver.read([name])[name]
        outside.put(name, "A", ["192.0.2.99"])  # someone moved it meanwhile
        with pytest.raises(DnsConflict) as caught:
            driver.apply([change(name, ("192.0.2.2",), seen)])
        assert name in str(caught.value)
        assert outside.types(name) == {"A": ["192.0.2.99"]}
        assert driver.read([name])[name].marks == (MARK,)

    def test_name_taken_since_read_is_a_conflict(
        self, driver: DnsDriver, zone: str, outside: Outside
    ) -> None:
        name = f"new.{zone}"
        seen = driver.read([name])[name]
        outside.put(name, "A", ["198.51.100.1"])
        with pytest.raises(DnsConflict):
            driver.apply([change(name, ("192.0.2.3",), seen)])
        assert outside.types(name) == {"A": ["198.51.100.1"]}
        assert outside.types(mark_name(name)) == {}

    def test_a_conflict_on_one_name_writes_no_other(
        self, driver: DnsDriver, zone: str, outside: Outside
    ) -> None:
        fine, stale = f"fine.{zone}", f"stale.{zone}"
        seen = driver.read([fine, stale])
        outside.put(stale, "A", ["198.51.100.2"])
        with pytest.raises(DnsConflict):
            driver.apply(
                [
                    change(fine, ("192.0.2.4",), seen[fine]),
                    change(stale, ("192.0.2.5",), seen[stale]),
                ]
            )
        assert outside.types(fine) == {}

    def test_records_not_ours_are_left_alone(
        self, driver: DnsDriver, zone: str, outside: Outside
    ) -> None:
        name, other = f"shop.{zone}", f"mail.{zone}"
        outside.put(other, "A", ["198.51.100.25"])
        outside.put(name, "TXT", ['"google-site-verification=abc"'])
        driver.apply([change(name, ("192.0.2.8",), NameRecords(name=name))])
        driver.apply([change(name, (), driver.read([name])[name])])
        assert outside.types(other) == {"A": ["198.51.100.25"]}
        assert outside.types(name) == {"TXT": ['"google-site-verification=abc"']}

    def test_long_mark_round_trips(self, driver: DnsDriver, zone: str) -> None:
        name = f"long.{zone}"
        mark = "swapyard " + "x" * 300 + ' "quoted" \\ end'
        driver.apply([change(name, ("192.0.2.9",), NameRecords(name=name), mark=mark)])
        assert driver.read([name])[name].marks == (mark,)

    def test_unknown_zone_is_named(self, unknown_zone_driver: DnsDriver) -> None:
        name = f"www.{unknown_zone_driver.zone}"
        with pytest.raises(DnsError) as caught:
            unknown_zone_driver.read([name])
        assert unknown_zone_driver.zone in str(caught.value)

    def test_unreachable_endpoint_is_bounded(self, unreachable_driver: DnsDriver) -> None:
        started = time.monotonic()
        with pytest.raises(DnsUnreachable) as caught:
            unreachable_driver.read([f"www.{unreachable_driver.zone}"])
        assert time.monotonic() - started < 20
        assert unreachable_driver.zone in str(caught.value)

    def test_silent_endpoint_times_out_bounded(self, silent_driver: DnsDriver) -> None:
        started = time.monotonic()
        with pytest.raises(DnsUnreachable) as caught:
            silent_driver.read([f"www.{silent_driver.zone}"])
        assert time.monotonic() - started < 20
        assert silent_driver.zone in str(caught.value)
