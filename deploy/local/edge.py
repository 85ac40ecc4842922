"""The local edge: one Caddy in front of every local instance, re-pointed through its admin API.

The edge listens on configured loopback ports and routes each domain to the
front Caddy of the instance that is live for it. Switching traffic posts a
whole new config to `/load`: Caddy applies it atomically, keeps its
listeners, and lets in-flight requests finish (`grace_period`), so no
connection is dropped. The route table is kept in `edge/routes.json` so a
restarted service (or edge) comes back with the same routes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from deploy.base import Route
from deploy.local.commands import spawn
from deploy.types import ProviderError

log = logging.getLogger(__name__)

SERVER = "swapyard-edge"  # the server name marks a Caddy as ours


class LocalEdge:
    """A Caddy process owned by the service; `listen` like ["127.0.0.1:8080"]."""

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
        """The Caddy JSON config serving `routes` (unknown hosts get a 404)."""
        caddy_routes: list[dict[str, Any]] = [
            {
                "match": [{"host": list(dict.fromkeys(r.domains))}],
                "handle": [
                    {
                        "handler": "reverse_proxy",
                        "upstreams": [{"dial": f"{r.endpoint[0]}:{r.endpoint[1]}"}],
                    }
                ],
                "terminal": True,
            }
            for r in routes
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
        """The pid in our pid file while that process lives and is our Caddy.

        The command line must name our config, so a recycled pid never gets
        a signal from `stop`. A dead child of ours is reaped on the way.
        """
        try:
            pid = int((self.dir / "caddy.pid").read_text().strip())
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        ours = str(self.dir / "config.json").encode() in cmdline
        return pid if ours and state != "Z" else None

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
        """Start the edge Caddy with the persisted routes unless it already answers.

        Never starts a second one while the process in our pid file lives
        (it may just be slow to answer): it waits for that one instead.
        """
        if self.is_running():
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
        """Stop the edge Caddy this state directory started (SIGTERM, then SIGKILL)."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._pid() is not None:
                log.warning("the edge Caddy (pid %s) ignored SIGTERM; killing it", pid)
                os.kill(pid, signal.SIGKILL)
                while self._pid() is not None:
                    time.sleep(0.05)
        (self.dir / "caddy.pid").unlink(missing_ok=True)

    # -- switching ---------------------------------------------------------
    def load(self, routes: list[Route]) -> None:
        """Persist `routes` and load them into the running edge in one atomic config swap."""
        self.ensure_running()
        self._save(routes)
        resp = requests.post(f"http://{self.admin}/load", json=self.config(routes), timeout=30)
        if resp.status_code != 200:
            raise ProviderError(f"the edge Caddy refused the new config: {resp.text.strip()}")

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
