"""`EdgeTraffic`: the traffic part of a driver whose instances sit behind the edge.

A driver mixes it in before `Provider` and sets `self.edge` (an
`deploy.providers.edge.proxy.Edge`); switching traffic is then the same for
every such driver, whatever its instances are (compose projects, LXD
containers).
"""

from __future__ import annotations

import ipaddress

from deploy.providers.base import InstanceHandle, Option, Route
from deploy.providers.edge.proxy import Edge
from deploy.providers.types import ProviderError

# The options of every driver behind the edge (its `Provider.options` include them).
EDGE_OPTIONS = (
    Option(
        "edge_listen",
        tuple[str, ...],
        ("127.0.0.1:8000",),
        "Where the edge Caddy serves the instances' domains: host:port, several as a list "
        "or comma-separated.",
    ),
    Option("edge_admin", str, "127.0.0.1:2119", "Address of the edge Caddy's admin API."),
    Option(
        "edge_addresses",
        tuple[str, ...],
        (),
        "The public addresses (IPv4, IPv6) clients reach the edge at: what the apps' DNS "
        "records name. Unset: an instance's own address where it has one (lxd), else no "
        "records can be written.",
    ),
)


def parse_addresses(values: tuple[str, ...], setting: str) -> tuple[str, ...]:
    """`values` as canonical IP addresses, sorted; `ProviderError` naming `setting` otherwise."""
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_address(value.strip())))
        except ValueError:
            raise ProviderError(
                f"{setting}: {value!r} is not an IP address; expected IPv4 or IPv6 addresses"
            ) from None
    return tuple(sorted(set(out)))


class EdgeTraffic:
    """`switch_traffic`, `remove_traffic`, `routes` and `ex_stop_edge` through `self.edge`."""

    edge: Edge
    edge_addresses: tuple[str, ...] = ()  # from the `edge_addresses` option

    def switch_traffic(self, route: Route) -> None:
        """Point `route.domains` at the instance's endpoint through the edge's switchboard.

        The edge Caddy loads a config only when the set of domains changes;
        a swap re-points the switchboard alone (see `proxy.py`).
        """
        self.edge.switch(route)

    def remove_traffic(self, domains: tuple[str, ...]) -> None:
        """Drop `domains` from the edge."""
        self.edge.remove(domains)

    def routes(self) -> list[Route]:
        """The edge's current routes."""
        return self.edge.routes()

    def dns_addresses(self, instance: InstanceHandle) -> tuple[str, ...]:
        """The edge's public addresses (`edge_addresses`), else the instance's own."""
        return self.edge_addresses or self.own_addresses(instance)

    def own_addresses(self, instance: InstanceHandle) -> tuple[str, ...]:
        """The instance's own routable addresses; none for instances that only have a port on
        this host (the local driver's)."""
        return ()

    def ex_stop_edge(self) -> None:
        """Stop the edge Caddy and its switchboard (tests, service shutdown)."""
        self.edge.stop()
