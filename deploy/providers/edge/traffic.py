"""`EdgeTraffic`: the traffic part of a driver whose instances sit behind the edge.

A driver mixes it in before `Provider` and sets `self.edge` (an
`deploy.providers.edge.proxy.Edge`); switching traffic is then the same for
every such driver, whatever its instances are (compose projects, LXD
containers).
"""

from __future__ import annotations

from deploy.providers.base import Route
from deploy.providers.edge.proxy import Edge


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
