"""DNS follows the swap on the API drivers: Route 53 (moto's server) and Hetzner (its stand-in).

The engine opens each zone the way the service does (`zone_access`: the
spec's `secret:NAME` settings read from a secret store), so the settings'
names reach the drivers' credentials as users write them. What the zone
holds is read by another client of the API (boto3; the stand-in's own
state), never by the driver under test.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from deploy.dns.base import DnsDriver
from deploy.dns.records import DnsSpec
from deploy.dns.registry import open_zone, zone_access
from deploy.providers.memory.provider import MemoryApp, MemoryProvider
from deploy.spec import AppCheck, DeploySpec, VolumeSpec
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.dns.hetzner_standin import HetznerStandIn
from tests.deploy.dns.test_route53 import moto_server

boto3 = pytest.importorskip("boto3")


class Api:
    """One API's zone: the settings a user writes, their secrets, and an outside view."""

    def __init__(
        self,
        settings: dict[str, Any],
        secrets: dict[str, str],
        addresses: Callable[[str], list[str]],
    ):
        self.settings, self.secrets, self.addresses = settings, secrets, addresses

    def open(self, dns: DnsSpec) -> DnsDriver:
        return open_zone(zone_access(dns.settings, self.secrets.get, timeout=5.0))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[HetznerStandIn, str]]:
    server = HetznerStandIn()
    with server.serve() as url:
        yield server, url


def route53(endpoint: str, zone: str) -> Api:
    client = boto3.client(
        "route53",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTESTING0000000",
        aws_secret_access_key="testing",
    )
    client.create_hosted_zone(Name=zone + ".", CallerReference=secrets.token_hex(8))
    zone_id = client.list_hosted_zones_by_name(DNSName=zone + ".")["HostedZones"][0]["Id"]

    def addresses(name: str) -> list[str]:
        sets = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return sorted(
            r["Value"]
            for s in sets
            if s["Name"] == name + "." and s["Type"] in ("A", "AAAA")
            for r in s["ResourceRecords"]
        )

    settings = {
        "provider": "route53",
        "zone": zone,
        "ttl": 1,
        "access_key_id": "AKIDTESTING0000000",
        "secret_access_key": "secret:aws",
        "endpoint": endpoint,
    }
    return Api(settings, {"aws": "testing"}, addresses)


def hetzner(server: HetznerStandIn, url: str, zone: str) -> Api:
    server.add_zone(zone)

    def addresses(name: str) -> list[str]:
        return server.states_of(zone, name.removesuffix("." + zone))[-1]

    settings = {
        "provider": "hetzner",
        "zone": zone,
        "ttl": 60,  # the API's least
        "token_secret": "secret:hcloud",
        "endpoint": url,
    }
    return Api(settings, {"hcloud": server.token}, addresses)


@pytest.fixture(params=["route53", "hetzner"])
def api(request: pytest.FixtureRequest) -> Api:
    zone = f"z{secrets.token_hex(4)}.example"
    if request.param == "route53":
        return route53(request.getfixturevalue("moto"), zone)
    server, url = request.getfixturevalue("standin")
    return hetzner(server, url, zone)


def spec(api: Api, version: str) -> DeploySpec:
    name = f"web.{api.settings['zone']}"
    ignition = json.dumps({"ignition": {"version": "3.4.0"}, "v": version}).encode()
    return DeploySpec(
        "p",
        "demo",
        f"{version:0<12}",
        ignition,
        (AppCheck("web", name, "/"),),
        VolumeSpec("sy-p-demo", "d", 1),
        (name,),
        DnsSpec(api.settings, "api-test"),
    )


class World:
    """A memory provider, a journal and an engine opening `api`'s zone."""

    def __init__(self, api: Api, tmp_path: Path):
        self.api = api
        self.name = f"web.{api.settings['zone']}"
        self.provider = MemoryProvider(tmp_path, ex_apps=(MemoryApp("web", (self.name,)),))
        db = sa.create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        self.journal = SqlJournal(db)
        self.engine = SwapEngine(
            self.provider,
            self.journal,
            health_timeout=2,
            health_interval=0.01,
            drain_seconds=0,
            open_dns=api.open,
        )

    def live_address(self) -> list[str]:
        current = self.journal.current("p", "demo")
        assert current is not None
        inst = self.provider.get_instance(current.instance_id)
        assert inst is not None
        return list(self.provider.dns_addresses(inst))


@pytest.fixture
def world(api: Api, tmp_path: Path) -> Iterator[World]:
    made = World(api, tmp_path)
    try:
        yield made
    finally:
        made.provider.ex_close()


def test_records_are_written_changed_and_removed_through_the_api(world: World) -> None:
    api = world.api
    first = world.engine.deploy(spec(api, "a"))
    assert first.status == "success", first.summary
    assert api.addresses(world.name) == world.live_address()
    api.settings["ttl"] += 60
    longer = world.engine.deploy(spec(api, "a"))
    assert (longer.status, longer.action) == ("success", "dns-only"), longer.summary
    assert world.engine.deploy(spec(api, "a")).status == "noop"
    gone = world.engine.destroy("p", "demo", dns=spec(api, "a").dns)
    assert gone.status == "success", gone.summary
    assert api.addresses(world.name) == []


def test_a_swap_moves_the_records_through_route53(moto: str, tmp_path: Path) -> None:
    api = route53(moto, f"z{secrets.token_hex(4)}.example")  # TTL 1 s: the swap waits it out
    world = World(api, tmp_path)
    try:
        assert world.engine.deploy(spec(api, "a")).status == "success"
        old = world.live_address()
        second = world.engine.deploy(spec(api, "b"))
        assert second.status == "success", second.summary
        assert api.addresses(world.name) == world.live_address() != old
    finally:
        world.provider.ex_close()


def test_a_secret_missing_from_the_store_is_named(api: Api, tmp_path: Path) -> None:
    api.secrets.clear()
    dns = DnsSpec(api.settings, "api-test")
    with pytest.raises(Exception, match=r"dns\.(secret_access_key|token_secret): secret '"):
        api.open(dns)
