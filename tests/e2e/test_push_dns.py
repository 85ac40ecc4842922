"""From a git push to DNS records: the service keeps a real BIND 9 zone in step with the config.

The push-to-live world (the forge's hook, the service over HTTP on loopback,
the local provider on the real Docker engine), with a `dns:` block writing
to a BIND 9 started for the test (zone `test`, TSIG key in the service's
secret store) and EDGE_ADDRESSES naming where clients reach the edge. Pushes
in turn: a first deploy writes the records and their marks; a TTL change is
a `dns-only` deployment that rewrites them without a swap; a domain added
gets its record in the swap; `state: absent` removes them all; a push whose
key is missing from the secret store fails, naming the setting and the secret.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import pytest

from tests.deploy.dns.servers import DnsTestServer, require, running
from tests.e2e.test_push_to_live import NOTES_CONFIG, TOKEN, World, world

__all__ = ["world"]  # push-to-live's world, with the settings below

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EDGE_ADDRESS = "203.0.113.7"  # TEST-NET-3: where "clients" reach the edge


def dns_block(server: DnsTestServer, ttl: int, key: str = "tsig") -> str:
    return (
        "dns:\n  provider: rfc2136\n  zone: test\n"
        f"  ttl: {ttl}\n  server: {server.server}\n  key_name: {server.key_name}\n"
        f"  key_secret: secret:{key}\n"
    )


def ttl_of(server: DnsTestServer, name: str) -> int | None:
    query = dns.message.make_query(name + ".", "A")
    query.flags &= ~dns.flags.RD
    answer = dns.query.udp(query, server.host, port=server.port, timeout=2).answer
    return answer[0].ttl if answer else None


@pytest.fixture
def zone() -> Iterator[DnsTestServer]:
    require("named")
    with running("bind", zone="test") as server:
        yield server


def push(world: World, message: str, config: str) -> dict:
    from service.quickstart.steps import wait_for_push

    world.commit(message, {"instances/notes/apps.config": config})
    sha, out = world.push()
    assert "delivered -> HTTP 202" in out, out
    [deployment] = wait_for_push(world.url, TOKEN, sha, timeout=180)
    return deployment


@pytest.mark.parametrize(
    "world", [{"edge_addresses": EDGE_ADDRESS, "dns_owner": "e2e"}], indirect=True
)
def test_records_follow_the_pushes(world: World, zone: DnsTestServer) -> None:
    (world.tmp / "secrets" / "tsig").write_text(zone.key_secret + "\n")
    mark = f"heritage=swapyard,swapyard/owner=e2e,swapyard/instance={world.project}/notes"
    first = push(world, "records", NOTES_CONFIG + dns_block(zone, 30))
    assert (first["status"], first["action"]) == ("success", "create"), first
    for name in ("site.test", "notes.test"):
        assert zone.query(name, "A") == [EDGE_ADDRESS]
        assert zone.query(f"_swapyard.{name}", "TXT") == [mark]
    assert ttl_of(zone, "site.test") == 30
    assert "hello site v1" in world.get("site.test").text

    longer = push(world, "longer ttl", NOTES_CONFIG + dns_block(zone, 90))
    assert (longer["status"], longer["action"]) == ("success", "dns-only"), longer
    assert ttl_of(zone, "site.test") == 90
    assert [i.id for i in world.provider.list_instances()] == [first["summary"].split()[-1]]

    more = NOTES_CONFIG.replace("domains: [site.test]", "domains: [site.test, www.test]")
    added = push(world, "www", more + dns_block(zone, 90))
    assert (added["status"], added["action"]) == ("success", "replace"), added
    assert zone.query("www.test", "A") == [EDGE_ADDRESS]

    missing = push(world, "key moved", more + dns_block(zone, 60, key="gone"))
    assert missing["status"] == "failure", missing
    assert "dns.key_secret" in missing["summary"] and "'gone'" in missing["summary"]
    assert ttl_of(zone, "www.test") == 90  # nothing was written

    absent = push(world, "absent", "state: absent\n" + more + dns_block(zone, 90))
    assert (absent["status"], absent["action"]) == ("success", "destroy"), absent
    for name in ("site.test", "notes.test", "www.test"):
        assert zone.query(name, "A") == [] and zone.query(f"_swapyard.{name}", "TXT") == []
    assert zone.query("foreign.test", "A") == ["192.0.2.99"]  # never swapyard's
