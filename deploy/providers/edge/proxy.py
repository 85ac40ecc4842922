"""The edge: one Caddy in front of every instance on the control host, and its switchboard.

The edge Caddy listens on configured loopback ports and proxies each domain
to the switchboard's stable address for that domain (`switchboard.py`),
which forwards to the front Caddy of the instance that is live for it. So
the Caddy config depends only on the set of domains: a swap re-points the
switchboard and loads nothing into Caddy, which is what keeps fresh and idle
keep-alive connections alive across swaps (a Caddy 2.6 config load resets
the odd new connection and closes every idle one).

A config is still loaded into Caddy when the set of domains changes (an
instance created, a domain added or removed), and only then: that load is
atomic and lets in-flight requests finish (`grace_period`), but the caveat
above applies to it. A new domain's address is listening before Caddy
routes to it; a removed domain leaves Caddy before its address goes.

The route table is kept in `edge/routes.json` so a restarted service (or
edge) comes back with the same routes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from deploy.providers.base import Route
from deploy.providers.commands import spawn
from deploy.providers.edge import pidfile
from deploy.providers.edge.switchboard import Switchboard
from deploy.providers.types import ProviderError

log = logging.getLogger(__name__)

SERVER = "swapyard-edge"  # the server name marks a Caddy as ours


class Edge:
    """The edge Caddy and its switchboard; `listen` like ["127.0.0.1:8080"]."""

    def __init__(
        self,
        state_dir: Path,
        listen: tuple[str, ...] = ("127.0.0.1:8080",),
        admin: str = "127.0.0.1:2119",  # not 2019: Debian's caddy.service has that one
        caddy: str = "caddy",
        grace_period: str = "10s",
    ):
        self.dir = state_dir / "edge"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.listen = tuple(listen)
        self.admin = admin
        self.caddy = caddy
        self.grace_period = grace_period
        self.switchboard = Switchboard(self.dir)

    # -- config ------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The routes the edge is configured with (persisted across restarts)."""
        path = self.dir / "routes.json"
        if not path.exists():
            return []
        return [
            Route(tuple(r["domains"]), r["instance_id"], (r["endpoint"][0], r["endpoint"][1]))
            for r in json.loads(path.read_text())
        ]

    def config(self, routes: list[Route]) -> dict[str, Any]:
        """The Caddy JSON config serving `routes` (unknown hosts get a 404).

        It names each domain's switchboard address, never an instance, so
        it is the same for every assignment of the same domains. Keep-alive
        towards the switchboard is off: each request picks the instance
        live when it is sent.
        """
        domains = sorted({d.lower() for r in routes for d in r.domains})
        caddy_routes: list[dict[str, Any]] = [
            {
                "match": [{"host": [domain]}],
                "handle": [
                    {
                        "handler": "reverse_proxy",
                        "transport": {"protocol": "http", "keep_alive": {"enabled": False}},
                        "upstreams": [{"dial": self.switchboard.dial(domain)}],
                    }
                ],
                "terminal": True,
            }
            for domain in domains
        ]
        caddy_routes.append(
            {
                "handle": [
                    {
                        "handler": "static_response",
                        "status_code": 404,
                        "body": "no instance serves this host\n",
                    }
                ]
            }
        )
        return {
            "admin": {"listen": self.admin},
            "apps": {
                "http": {
                    "grace_period": self.grace_period,
                    "servers": {
                        SERVER: {
                            "listen": list(self.listen),
                            "automatic_https": {"disable": True},
                            "routes": caddy_routes,
                        }
                    },
                }
            },
        }

    def _save(self, routes: list[Route]) -> None:
        data = [
            {"domains": list(r.domains), "instance_id": r.instance_id, "endpoint": list(r.endpoint)}
            for r in routes
        ]
        tmp = self.dir / "routes.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.dir / "routes.json")
        (self.dir / "config.json").write_text(json.dumps(self.config(routes), indent=2))

    # -- process -----------------------------------------------------------
    def _pid(self) -> int | None:
        """The pid of our Caddy: its command line must name our config (see `pidfile`)."""
        return pidfile.live_pid(self.dir / "caddy.pid", str(self.dir / "config.json"))

    def is_running(self) -> bool:
        """True when our edge answers on the admin address, False when nothing listens.

        Raises `ProviderError` when some other Caddy answers there (e.g. the
        system's caddy.service on :2019): its config must never be replaced;
        also when the admin API accepts but does not answer in time.
        """
        url = f"http://{self.admin}/config/apps/http/servers"
        try:
            resp = requests.get(url, timeout=5)
        except requests.Timeout as exc:
            raise ProviderError(f"the edge admin API on {self.admin} does not answer") from exc
        except requests.ConnectionError:
            return False
        servers = resp.json() if resp.status_code == 200 else None
        if resp.status_code == 200 and isinstance(servers, dict) and SERVER in servers:
            return True
        raise ProviderError(
            f"another program answers on the edge's admin address {self.admin}; "
            "choose a free one (ex_edge_admin)"
        )

    def ensure_running(self, timeout: float = 15) -> None:
        """Start the switchboard and the edge Caddy with the persisted routes unless running.

        Never starts a second Caddy while the process in our pid file lives
        (it may just be slow to answer): it waits for that one instead. A
        foreign Caddy on the admin address is refused before anything starts.
        """
        running = self.is_running()
        self.switchboard.apply(self._table(self.routes()))
        if running:
            return
        if self._pid() is None:
            self._save(self.routes())
            argv = [
                self.caddy,
                "run",
                "--config",
                str(self.dir / "config.json"),
                "--pidfile",
                str(self.dir / "caddy.pid"),
            ]
            spawn(argv, log_path=self.dir / "caddy.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ProviderError):  # admin may answer before the config
                if self.is_running():
                    return
            time.sleep(0.1)
        raise ProviderError(
            f"the edge Caddy did not answer on {self.admin} within {timeout} s; "
            f"see {self.dir / 'caddy.log'}"
        )

    def stop(self, timeout: float = 15) -> None:
        """Stop the edge Caddy and the switchboard this state directory started."""
        pidfile.stop(self.dir / "caddy.pid", str(self.dir / "config.json"), timeout)
        self.switchboard.stop(timeout)

    # -- switching ---------------------------------------------------------
    @staticmethod
    def _table(routes: list[Route]) -> dict[str, tuple[str, int]]:
        return {d.lower(): r.endpoint for r in routes for d in r.domains}

    def load(self, routes: list[Route]) -> None:
        """Persist `routes` and put them in effect; Caddy loads a config only for new domains.

        New domains get their switchboard address before Caddy routes to
        them; removed ones leave Caddy before their address goes.
        """
        self.ensure_running()
        table, before = self._table(routes), self._table(self.routes())
        self._save(routes)
        self.switchboard.apply(before | table)  # removed domains stay until Caddy drops them
        config = self.config(routes)
        if self._loaded_config() != config:
            resp = requests.post(f"http://{self.admin}/load", json=config, timeout=30)
            if resp.status_code != 200:
                raise ProviderError(f"the edge Caddy refused the new config: {resp.text.strip()}")
        if before.keys() - table.keys():
            self.switchboard.apply(table)

    def _loaded_config(self) -> Any:
        """The config the running edge Caddy has (None when it does not say)."""
        resp = requests.get(f"http://{self.admin}/config/", timeout=10)
        return resp.json() if resp.status_code == 200 else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize read-modify-load of the route table across workers (flock)."""
        with open(self.dir / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def switch(self, route: Route) -> None:
        """Route `route.domains` to its instance, leaving other domains where they are."""
        wanted = set(route.domains)
        with self._locked():
            kept = []
            for r in self.routes():
                rest = tuple(d for d in r.domains if d not in wanted)
                if rest:
                    kept.append(Route(rest, r.instance_id, r.endpoint))
            self.load([*kept, route])

    def remove(self, domains: tuple[str, ...]) -> None:
        """Stop routing `domains`."""
        gone = set(domains)
        with self._locked():
            routes = [
                Route(tuple(d for d in r.domains if d not in gone), r.instance_id, r.endpoint)
                for r in self.routes()
            ]
            self.load([r for r in routes if r.domains])
