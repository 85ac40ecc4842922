"""The route53 driver against moto's Route 53 server, started here on a free loopback port.

moto runs as its own process (`python -m moto.server`), so the driver talks
HTTP to it exactly as to AWS. moto takes any key unless its IAM access control
is on (a second server, for the refused-key test; with it on, moto refuses even
valid keys for Route 53, so the other tests run without it). Its
exact-match checks are weaker than Route 53's (a DELETE is compared with the
change journal, not the current record set; a CREATE over an existing set is
accepted): the driver's read-before-write finds the conflicts here, and one
test sends a batch Route 53 refuses to show that refusal becomes `DnsConflict`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.dns.base import DnsConflict, DnsDriver, DnsError, DnsRefused, ZoneAccess
from deploy.dns.registry import open_zone
from tests.deploy.dns.contract import ApiDriverContract, silent_endpoint

pytest.importorskip(
    "moto.server", reason="moto[server] is not installed (pip install moto[server])"
)
boto3 = pytest.importorskip("boto3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A moto server process on a free loopback port; its base URL. Stopped after."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode}: {log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"moto_server did not listen on {endpoint} within 30s")
            time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto without access control (it then takes any key), for the session."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def moto_checking_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto with its IAM access control on from the first request: a key it does not
    know is refused (InvalidClientTokenId), a wrong signature too."""
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    with moto_server(log, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def r53(moto_endpoint: str) -> Any:
    """A plain boto3 client on moto, the test's own access (not the driver's)."""
    return boto3.client(
        "route53",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def access(zone: str, endpoint: str, timeout: float = 5.0) -> ZoneAccess:
    return ZoneAccess(
        provider="route53",
        zone=zone,
        endpoint=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        timeout=timeout,
    )


class MotoOutside:
    """Another party writing to and listing the hosted zone through boto3."""

    def __init__(self, client: Any, zone_id: str):
        self.client = client
        self.zone_id = zone_id

    def put(self, name: str, rtype: str, values: list[str], ttl: int = 300) -> None:
        rrset = {
            "Name": name + ".",
            "Type": rtype,
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        }
        self.client.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset}]},
        )

    def types(self, name: str) -> dict[str, list[str]]:
        pages = self.client.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=self.zone_id
        )
        found: dict[str, list[str]] = {}
        for page in pages:
            for rrset in page["ResourceRecordSets"]:
                if rrset["Name"] == name + ".":
                    values = [r["Value"] for r in rrset.get("ResourceRecords", [])]
                    found.setdefault(rrset["Type"], []).extend(values)
        return {t: sorted(v) for t, v in found.items()}


@pytest.fixture
def zone(r53: Any) -> Iterator[str]:
    name = f"z{secrets.token_hex(4)}.example.test"
    r53.create_hosted_zone(Name=name + ".", CallerReference=secrets.token_hex(8))
    yield name


@pytest.fixture
def zone_id(r53: Any, zone: str) -> str:
    zones = r53.list_hosted_zones_by_name(DNSName=zone + ".")["HostedZones"]
    return str(zones[0]["Id"].rsplit("/", 1)[-1])


@pytest.fixture
def driver(zone: str, moto_endpoint: str) -> Iterator[DnsDriver]:
    opened = open_zone(access(zone, moto_endpoint))
    yield opened
    opened.close()


@pytest.fixture
def outside(r53: Any, zone_id: str) -> MotoOutside:
    return MotoOutside(r53, zone_id)


@pytest.fixture
def unknown_zone_driver(moto_endpoint: str) -> Iterator[DnsDriver]:
    opened = open_zone(access("nowhere-to-be-found.test", moto_endpoint))
    yield opened
    opened.close()


@pytest.fixture
def unreachable_driver() -> Iterator[DnsDriver]:
    opened = open_zone(access("example.test", f"http://127.0.0.1:{free_port()}", timeout=1.0))
    yield opened
    opened.close()


@pytest.fixture
def silent_driver() -> Iterator[DnsDriver]:
    with silent_endpoint() as hostport:
        opened = open_zone(access("example.test", f"http://{hostport}", timeout=1.0))
        yield opened
        opened.close()


class TestRoute53(ApiDriverContract):
    """The shared contract on moto."""


def test_two_public_zones_of_one_name_are_refused(r53: Any, moto_endpoint: str) -> None:
    name = f"twice{secrets.token_hex(3)}.example.test"
    for _ in range(2):
        r53.create_hosted_zone(Name=name + ".", CallerReference=secrets.token_hex(8))
    driver = open_zone(access(name, moto_endpoint))
    with pytest.raises(Exception, match=r"2 public hosted zones are named") as caught:
        driver.read([f"www.{name}"])
    assert name in str(caught.value)


def test_private_zone_of_the_name_is_not_taken(r53: Any, moto_endpoint: str) -> None:
    name = f"priv{secrets.token_hex(3)}.example.test"
    r53.create_hosted_zone(
        Name=name + ".",
        CallerReference=secrets.token_hex(8),
        HostedZoneConfig={"PrivateZone": True, "Comment": "internal"},
        VPC={"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"},
    )
    driver = open_zone(access(name, moto_endpoint))
    with pytest.raises(Exception, match="no public hosted zone named"):
        driver.read([f"www.{name}"])


def test_txt_values_are_unquoted_and_joined(
    driver: DnsDriver, zone: str, outside: MotoOutside
) -> None:
    name = f"www.{zone}"
    outside.put(f"_swapyard.{name}", "TXT", ['"a" "b"', '"with \\"quote\\""'])
    assert driver.read([name])[name].marks == ("ab", 'with "quote"')


def test_a_batch_route53_refuses_is_a_conflict(
    driver: DnsDriver, zone: str, outside: MotoOutside
) -> None:
    """Route 53's own refusal (here: CREATE of a record set that exists, which moto
    checks when the same CREATE was journaled before) is a `DnsConflict` naming the
    zone, the endpoint and Route 53's message; nothing of the batch is written."""
    name = f"race.{zone}"
    rrset = {
        "Name": name + ".",
        "Type": "A",
        "TTL": 300,
        "ResourceRecords": [{"Value": "192.0.2.1"}],
    }
    create = {"Action": "CREATE", "ResourceRecordSet": rrset}
    outside.client.change_resource_record_sets(
        HostedZoneId=outside.zone_id, ChangeBatch={"Changes": [create]}
    )
    mark = {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": f"_swapyard.{name}.",
            "Type": "TXT",
            "TTL": 300,
            "ResourceRecords": [{"Value": '"swapyard"'}],
        },
    }
    with pytest.raises(DnsConflict) as caught:
        driver._submit([mark, create])  # type: ignore[attr-defined]
    message = str(caught.value)
    assert zone in message and "127.0.0.1" in message and "already exists" in message
    assert outside.types(f"_swapyard.{name}") == {}


def test_a_malformed_batch_is_an_error_not_a_conflict(driver: DnsDriver, zone: str) -> None:
    """InvalidChangeBatch also answers a malformed change; that is no conflict to retry."""
    bad = {
        "Action": "CREATE",
        "ResourceRecordSet": {
            "Name": f"bad name!.{zone}.",
            "Type": "A",
            "TTL": 300,
            "ResourceRecords": [{"Value": "192.0.2.1"}],
        },
    }
    with pytest.raises(DnsError) as caught:
        driver._submit([bad])  # type: ignore[attr-defined]
    assert not isinstance(caught.value, DnsConflict)
    assert "InvalidChangeBatch" in str(caught.value) and zone in str(caught.value)


def test_a_key_route53_does_not_know_is_refused(moto_checking_keys: str) -> None:
    driver = open_zone(
        ZoneAccess(
            provider="route53",
            zone="example.test",
            endpoint=moto_checking_keys,
            access_key_id="AKIAUNKNOWNKEY000000",
            secret_access_key="not-the-secret",
        )
    )
    with pytest.raises(DnsRefused) as caught:
        driver.read(["www.example.test"])
    message = str(caught.value)
    assert "InvalidClientTokenId" in message and "example.test" in message
    assert moto_checking_keys in message
