"""The hetzner driver against the Hetzner Cloud API stand-in (tests/deploy/dns/hetzner_standin.py).

Hetzner's API is out of this machine's reach, so the stand-in, a real HTTP
server on loopback built from the API's documented shapes, answers instead.
Besides the shared contract: a token refused, a rate limit answered once and
then passed, a persistent one given up on in bounded time, an invalid record
quoting the API's error, a secondary zone refused, every action waited for, and
the zone's state after every single API write checked for a moment where the
name resolved to nothing.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from deploy.dns.base import (
    DnsConflict,
    DnsDriver,
    DnsError,
    DnsRefused,
    NameRecords,
    ZoneAccess,
)
from deploy.dns.registry import open_zone
from tests.deploy.dns.contract import MARK, ApiDriverContract, change, silent_endpoint
from tests.deploy.dns.hetzner_standin import HetznerStandIn


@pytest.fixture(scope="session")
def standin() -> HetznerStandIn:
    return HetznerStandIn()


@pytest.fixture(scope="session")
def base_url(standin: HetznerStandIn) -> Iterator[str]:
    with standin.serve() as url:
        yield url


def access(zone: str, endpoint: str, token: str | None, timeout: float = 5.0) -> ZoneAccess:
    return ZoneAccess(
        provider="hetzner", zone=zone, token=token, endpoint=endpoint, timeout=timeout
    )


def opened(zone: str, endpoint: str, token: str | None) -> DnsDriver:
    driver = open_zone(access(zone, endpoint, token))
    driver.action_poll = 0.02  # type: ignore[attr-defined]  # the stand-in finishes at once
    return driver


class ApiOutside:
    """Another party using the API directly (plain requests, the documented calls)."""

    def __init__(self, base: str, token: str, zone: str):
        self.base, self.zone = base, zone
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {token}"

    def relative(self, name: str) -> str:
        return "@" if name == self.zone else name.removesuffix("." + self.zone)

    def put(self, name: str, rtype: str, values: list[str], ttl: int = 300) -> None:
        rel = self.relative(name)
        records = [{"value": v} for v in values]
        if rtype in self.types(name):
            url = f"{self.base}/zones/{self.zone}/rrsets/{rel}/{rtype}/actions/set_records"
            resp = self.http.post(url, json={"records": records}, timeout=5)
        else:
            body = {"name": rel, "type": rtype, "ttl": ttl, "records": records}
            resp = self.http.post(f"{self.base}/zones/{self.zone}/rrsets", json=body, timeout=5)
        assert resp.status_code == 201, resp.text

    def types(self, name: str) -> dict[str, list[str]]:
        resp = self.http.get(
            f"{self.base}/zones/{self.zone}/rrsets",
            params={"name": self.relative(name), "per_page": 100},
            timeout=5,
        )
        resp.raise_for_status()
        return {
            rr["type"]: sorted(r["value"] for r in rr["records"]) for rr in resp.json()["rrsets"]
        }


@pytest.fixture
def zone(standin: HetznerStandIn, base_url: str) -> str:
    name = f"z{secrets.token_hex(4)}.example.test"
    standin.add_zone(name)
    return name


@pytest.fixture
def driver(zone: str, base_url: str, standin: HetznerStandIn) -> Iterator[DnsDriver]:
    d = opened(zone, base_url, standin.token)
    yield d
    d.close()


@pytest.fixture
def outside(zone: str, base_url: str, standin: HetznerStandIn) -> ApiOutside:
    return ApiOutside(base_url, standin.token, zone)


@pytest.fixture
def unknown_zone_driver(base_url: str, standin: HetznerStandIn) -> Iterator[DnsDriver]:
    d = opened("nowhere-to-be-found.test", base_url, standin.token)
    yield d
    d.close()


@pytest.fixture
def unreachable_driver() -> Iterator[DnsDriver]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = open_zone(access("example.test", f"http://127.0.0.1:{port}/v1", "t", timeout=1.0))
    yield d
    d.close()


@pytest.fixture
def silent_driver() -> Iterator[DnsDriver]:
    with silent_endpoint() as hostport:
        d = open_zone(access("example.test", f"http://{hostport}/v1", "t", timeout=1.0))
        yield d
        d.close()


class TestHetzner(ApiDriverContract):
    """The shared contract on the stand-in."""


def test_bad_token_is_refused(zone: str, base_url: str) -> None:
    driver = opened(zone, base_url, "not-a-token")
    with pytest.raises(DnsRefused) as caught:
        driver.read([f"www.{zone}"])
    message = str(caught.value)
    assert zone in message and "401" in message and "unable to authenticate" in message


def test_missing_token_is_refused_before_any_request(zone: str, base_url: str) -> None:
    with pytest.raises(DnsRefused, match="no API token"):
        opened(zone, base_url, None).read([f"www.{zone}"])


def test_read_only_token_cannot_write(zone: str, base_url: str, standin: HetznerStandIn) -> None:
    driver = opened(zone, base_url, standin.readonly_token)
    name = f"www.{zone}"
    seen = driver.read([name])[name]
    with pytest.raises(DnsRefused) as caught:
        driver.apply([change(name, ("192.0.2.1",), seen)])
    assert "token_readonly" in str(caught.value)


def test_rate_limited_once_then_served(
    driver: DnsDriver, zone: str, standin: HetznerStandIn
) -> None:
    name = f"www.{zone}"
    before = len(standin.requests)
    standin.throttle_next = 1
    assert driver.read([name])[name] == NameRecords(name=name)
    assert standin.throttle_next == 0
    first_two = standin.requests[before : before + 2]
    assert first_two == [("GET", "/v1/zones"), ("GET", "/v1/zones")]  # the 429, then again


def test_rate_limit_that_persists_is_given_up_bounded(
    driver: DnsDriver, zone: str, standin: HetznerStandIn
) -> None:
    standin.throttle_next = 1000
    started = time.monotonic()
    try:
        with pytest.raises(DnsError) as caught:
            driver.read([f"www.{zone}"])
    finally:
        standin.throttle_next = 0
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "429" in message and "rate_limit_exceeded" in message and zone in message


def test_invalid_record_quotes_the_api(driver: DnsDriver, zone: str) -> None:
    name = f"bad.{zone}"
    with pytest.raises(DnsError) as caught:
        driver.apply([change(name, ("192.0.2.300",), NameRecords(name=name))])
    message = str(caught.value)
    assert "422 invalid_input" in message and "192.0.2.300" in message and zone in message


def test_secondary_zone_is_refused(standin: HetznerStandIn, base_url: str) -> None:
    name = f"sec{secrets.token_hex(3)}.example.test"
    standin.add_zone(name, mode="secondary")
    with pytest.raises(DnsError, match="secondary mode") as caught:
        opened(name, base_url, standin.token).read([f"www.{name}"])
    assert name in str(caught.value)


def test_every_action_is_waited_for(driver: DnsDriver, zone: str, standin: HetznerStandIn) -> None:
    name = f"www.{zone}"
    known = set(standin.actions)
    driver.apply([change(name, ("192.0.2.1", "2001:db8::1"), NameRecords(name=name))])
    driver.apply([change(name, ("192.0.2.2",), driver.read([name])[name], ttl=120)])
    mine = [a for i, a in standin.actions.items() if i not in known]
    # create A, AAAA, TXT; then set A, change its TTL, change the TXT's TTL (same mark), delete AAAA
    assert [a["command"] for a in mine] == [
        *["create_rrset"] * 3,
        "set_rrset_records",
        *["change_rrset_ttl"] * 2,
        "delete_rrset",
    ]
    assert {a["status"] for a in mine} == {"success"}  # each was polled until done


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("192.0.2.1",), ("2001:db8::7",)),  # A -> AAAA: the new type before the old goes
        (("192.0.2.1", "2001:db8::1"), ("192.0.2.3",)),
        (("2001:db8::1",), ("192.0.2.4", "2001:db8::2")),
    ],
)
def test_never_empty_during_a_replace(
    driver: DnsDriver,
    zone: str,
    standin: HetznerStandIn,
    first: tuple[str, ...],
    second: tuple[str, ...],
) -> None:
    name = f"live.{zone}"
    driver.apply([change(name, first, NameRecords(name=name))])
    start = len(standin.history)
    driver.apply([change(name, second, driver.read([name])[name], mark=MARK + " 2")])
    states = standin.states_of(zone, "live")[start - 1 :]
    assert len(states) >= 3  # the state before, at least one write, the state after
    assert all(states), f"{name} resolved to nothing in between: {states}"
    assert sorted(states[-1]) == sorted(second)


def test_delete_removes_the_mark_last(driver: DnsDriver, zone: str, standin: Any) -> None:
    name = f"gone.{zone}"
    driver.apply([change(name, ("192.0.2.1", "2001:db8::1"), NameRecords(name=name))])
    start = len(standin.history)
    driver.apply([change(name, (), driver.read([name])[name])])
    marked = [
        (zone_state.get(zone, {}).get(("_swapyard.gone", "TXT")) is not None)
        for zone_state in standin.history[start:]
    ]
    addresses = standin.states_of(zone, "gone")[start:]
    # while any address remained, the mark was still there
    assert all(mark for mark, addrs in zip(marked, addresses, strict=True) if addrs)
    assert addresses[-1] == [] and marked[-1] is False


def test_rrset_created_by_another_between_read_and_write_is_a_conflict(
    driver: DnsDriver, zone: str, standin: HetznerStandIn, outside: ApiOutside
) -> None:
    name = f"race.{zone}"
    seen = driver.read([name])[name]
    standin.interleave = lambda s: s.put_direct(zone, "race", "A", ["198.51.100.7"])
    with pytest.raises(DnsConflict) as caught:
        driver.apply([change(name, ("192.0.2.1",), seen)])
    assert "409 uniqueness_error" in str(caught.value)
    assert outside.types(name) == {"A": ["198.51.100.7"]}


def test_rrset_removed_by_another_between_read_and_write_is_a_conflict(
    driver: DnsDriver, zone: str, standin: HetznerStandIn
) -> None:
    name = f"race.{zone}"
    driver.apply([change(name, ("192.0.2.1",), NameRecords(name=name))])
    seen = driver.read([name])[name]
    standin.interleave = lambda s: s.remove_direct(zone, "race", "A")
    with pytest.raises(DnsConflict) as caught:
        driver.apply([change(name, ("192.0.2.2",), seen)])
    assert "404 not_found" in str(caught.value)


def test_zone_deleted_between_read_and_write_is_named(
    driver: DnsDriver, zone: str, standin: HetznerStandIn
) -> None:
    name = f"www.{zone}"
    seen = driver.read([name])[name]
    standin.interleave = lambda s: s.remove_direct(zone)
    with pytest.raises(DnsError) as caught:
        driver.apply([change(name, ("192.0.2.2",), seen)])
    assert not isinstance(caught.value, DnsConflict)
    assert f"no zone named {zone}" in str(caught.value)
