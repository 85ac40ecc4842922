"""`EdgeTraffic`: the traffic part of a driver whose instances sit behind the edge.

A driver mixes it in before `Provider` and sets `self.edge` (an
`deploy.providers.edge.proxy.Edge`); switching traffic is then the same for
every such driver, whatever its instances are (compose projects, LXD
containers).
"""

from __future__ import annotations

from deploy.providers.base import Option, Route
from deploy.providers.edge.proxy import Edge

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
)


class EdgeTraffic:
    """`switch_traffic`, `remove_traffic`, `routes` and `ex_stop_edge` through `self.edge`."""

    edge: Edge

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

    def ex_stop_edge(self) -> None:
        """Stop the edge Caddy and its switchboard (tests, service shutdown)."""
        self.edge.stop()
