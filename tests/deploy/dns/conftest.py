"""The DNS drivers' tests get the real test servers (BIND 9, PowerDNS) as fixtures."""

from tests.deploy.dns.servers import bind_server, dns_server, pdns_server

__all__ = ["bind_server", "dns_server", "pdns_server"]
