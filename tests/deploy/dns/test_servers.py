"""The test DNS servers themselves: each answers for its zone, keeps the foreign record,
and takes updates signed with its key (through `nsupdate`, not our code) and no others."""

from __future__ import annotations

import pytest

from tests.deploy.dns.servers import FOREIGN, FOREIGN_ADDRESS, DnsTestServer, nsupdate, require


def test_serves_zone_and_foreign_record(dns_server: DnsTestServer) -> None:
    rcode, soa = dns_server.lookup(dns_server.zone, "SOA")
    assert (rcode, len(soa)) == ("NOERROR", 1)
    assert soa[0].startswith(f"ns.{dns_server.zone}. ")
    assert dns_server.query(f"{FOREIGN}.{dns_server.zone}", "A") == [FOREIGN_ADDRESS]
    assert dns_server.lookup(f"absent.{dns_server.zone}", "A") == ("NXDOMAIN", [])


def test_signed_update_lands_and_wrong_secret_is_refused(dns_server: DnsTestServer) -> None:
    require("nsupdate")
    name = f"fixture-{dns_server.kind}.{dns_server.zone}"
    nsupdate(dns_server, f"update delete {name}. A\nupdate add {name}. 60 A 192.0.2.1")
    assert dns_server.query(name, "A") == ["192.0.2.1"]
    wrong = "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1rZXlzLXNlY3JldA=="
    with pytest.raises(AssertionError, match="nsupdate"):
        nsupdate(dns_server, f"update delete {name}. A", secret=wrong)
    assert dns_server.query(name, "A") == ["192.0.2.1"]
    nsupdate(dns_server, f"update delete {name}. A")
    assert dns_server.lookup(name, "A") == ("NXDOMAIN", [])
