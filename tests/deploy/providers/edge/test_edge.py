"""The local edge with real Caddy and real upstream servers: switches drop no connection.

Each upstream is a small HTTP/1.1 server on a free loopback port that names
itself in every answer (one of them answers 503, as an instance in
maintenance does). Clients talk to the edge over fresh connections and over
keep-alive connections that sit idle between requests; neither may see a
connection error through a run of switches, and only 200 and 503 answers.
"""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.providers.base import Route
from deploy.providers.edge.proxy import Edge
from deploy.providers.types import ProviderError
from tests.deploy.conftest import free_port
from tests.deploy.fixtures import caddy_available

pytestmark = pytest.mark.skipif(not caddy_available(), reason="caddy is not installed")

SWITCHES = 20


class Upstream(http.server.ThreadingHTTPServer):
    """An HTTP/1.1 server on a free loopback port answering `status` and its name."""

    daemon_threads = True

    def __init__(self, name: str, status: int = 200):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name, self.status = name, status
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", int(self.server_address[1]))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def do_GET(self) -> None:
        body = f"{self.server.name}\n".encode()
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstreams() -> Iterator[list[Upstream]]:
    servers = [Upstream("blue"), Upstream("green"), Upstream("maintenance", 503)]
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    e = Edge(tmp_path, (f"127.0.0.1:{free_port()}",), f"127.0.0.1:{free_port()}")
    try:
        yield e
    finally:
        e.stop()


def get(edge: Edge, host: str, conn: http.client.HTTPConnection | None = None) -> str:
    """GET / for `host` through the edge (on `conn` when given): '<status> <body>'."""
    ours = conn is None
    if conn is None:
        conn = connect(edge)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return f"{resp.status} {resp.read().decode().strip()}"
    finally:
        if ours:
            conn.close()


def connect(edge: Edge) -> http.client.HTTPConnection:
    host, port = edge.listen[0].rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=10)


class Clients:
    """Fresh-connection and idle keep-alive clients, each answer counted per kind."""

    def __init__(self, edge: Edge, host: str):
        self.edge, self.host = edge, host
        self.stopping = threading.Event()
        self.seen: dict[str, Counter[str]] = {"fresh": Counter(), "keep-alive": Counter()}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.fresh) for _ in range(2)]
        self.threads += [threading.Thread(target=self.keepalive, args=(i,)) for i in range(4)]

    def count(self, kind: str, what: str) -> None:
        with self.lock:
            self.seen[kind][what] += 1

    def fresh(self) -> None:
        while not self.stopping.is_set():
            try:
                self.count("fresh", get(self.edge, self.host).split()[0])
            except (OSError, http.client.HTTPException) as exc:
                self.count("fresh", f"error {type(exc).__name__}")

    def keepalive(self, n: int) -> None:
        """One connection, idle 10-80 ms between requests; never retried."""
        conn = connect(self.edge)
        while not self.stopping.wait(0.01 + 0.01 * (n * 2 % 7)):
            try:
                self.count("keep-alive", get(self.edge, self.host, conn).split()[0])
            except (OSError, http.client.HTTPException) as exc:
                self.count("keep-alive", f"error {type(exc).__name__}")
                conn.close()
                conn = connect(self.edge)
        conn.close()

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)


def test_switches_under_load_drop_no_connection(edge: Edge, upstreams: list[Upstream]) -> None:
    blue, green, maintenance = upstreams
    edge.switch(Route(("shop.test",), "blue", blue.endpoint))
    cycle = [maintenance, green, maintenance, blue]  # as a swap does: 503s, then the new one
    with Clients(edge, "shop.test") as clients:
        for n in range(SWITCHES):
            time.sleep(0.1)
            target = cycle[n % len(cycle)]
            edge.switch(Route(("shop.test",), target.name, target.endpoint))
            assert get(edge, "shop.test").endswith(target.name)  # in effect on return
        time.sleep(0.2)
    for kind, seen in clients.seen.items():
        assert set(seen) <= {"200", "503"}, f"{kind}: {dict(seen)}"
        assert seen["200"] > SWITCHES and seen["503"] > 0, f"{kind}: {dict(seen)}"


def test_a_switch_keeps_an_idle_keepalive_connection(edge: Edge, upstreams: list[Upstream]) -> None:
    blue, green, _ = upstreams
    edge.switch(Route(("shop.test", "www.shop.test"), "blue", blue.endpoint))
    conn = connect(edge)
    assert get(edge, "shop.test", conn) == "200 blue"
    local = conn.sock.getsockname()
    edge.switch(Route(("shop.test", "www.shop.test"), "green", green.endpoint))
    assert get(edge, "shop.test", conn) == "200 green"
    assert conn.sock.getsockname() == local  # the same connection, not a reconnect
    conn.close()


def test_only_a_new_set_of_domains_loads_caddy(edge: Edge, upstreams: list[Upstream]) -> None:
    blue, green, _ = upstreams
    edge.switch(Route(("shop.test",), "blue", blue.endpoint))
    loaded = edge._loaded_config()
    edge.switch(Route(("shop.test",), "green", green.endpoint))  # a swap: no load
    assert edge._loaded_config() == loaded
    edge.switch(Route(("blog.test",), "blue", blue.endpoint))  # a new domain: a load
    assert edge._loaded_config() != loaded
    assert get(edge, "blog.test") == "200 blue"
    assert get(edge, "shop.test") == "200 green"
    edge.remove(("blog.test",))
    assert get(edge, "blog.test").startswith("404")
    assert get(edge, "shop.test") == "200 green"
    assert [r.domains for r in edge.routes()] == [("shop.test",)]


def test_routes_survive_a_restart_of_caddy_and_of_the_switchboard(
    edge: Edge, upstreams: list[Upstream]
) -> None:
    blue, green, _ = upstreams
    edge.switch(Route(("Shop.Test",), "blue", blue.endpoint))
    assert get(edge, "shop.test") == "200 blue"
    edge.stop()
    again = Edge(edge.dir.parent, edge.listen, edge.admin)
    again.ensure_running()
    assert get(again, "SHOP.test") == "200 blue"
    pid = int((edge.dir / "switchboard.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # a crash: the next switch starts it again
    again.switch(Route(("shop.test",), "green", green.endpoint))
    assert get(again, "shop.test") == "200 green"
    assert again.switchboard.is_running()


def test_two_state_directories_keep_their_own_addresses(
    tmp_path: Path, upstreams: list[Upstream]
) -> None:
    blue, green, _ = upstreams
    edges = [
        Edge(tmp_path / n, (f"127.0.0.1:{free_port()}",), f"127.0.0.1:{free_port()}")
        for n in ("one", "two")
    ]
    try:
        for e, up in zip(edges, (blue, green), strict=True):
            e.switch(Route(("shop.test",), up.name, up.endpoint))
        assert [get(e, "shop.test") for e in edges] == ["200 blue", "200 green"]
    finally:
        for e in edges:
            e.stop()


def test_the_switchboard_refuses_a_malformed_table(edge: Edge) -> None:
    edge.ensure_running()
    board = edge.switchboard
    for bad in (b"not json\n", b'{"a.test": ["127.0.0.1"]}\n', b"[1, 2]\n"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(f"\0{board.control}")
            sock.sendall(bad)
            assert sock.makefile("rb").readline().startswith(b"error: a malformed table")
    board.apply({})  # still serving
    with pytest.raises(ProviderError, match="refused the routes: error: a malformed"):
        board.apply({"a.test": ("127.0.0.1", "not a port")})  # type: ignore[dict-item]
