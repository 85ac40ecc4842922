"""The switchboard: one stable address per domain, forwarding to the instance live for it.

The edge Caddy proxies each domain to the switchboard's address for that
domain, an abstract unix socket named after the edge's state directory and
the domain, and the switchboard connects each new connection to the front
Caddy of the instance that is live for the domain. A swap changes only the
switchboard's table, so the edge Caddy's config stays as it is and nothing
in front of the switchboard notices a swap.

Why not repoint the edge Caddy itself: every config load in Caddy 2.6
(Debian 12's) rebuilds its servers. The listeners are handed over, but a
connection arriving at the handover is sometimes reset, and every idle
keep-alive connection is closed; a swap under load saw a reset about one
swap in nine. Caddy 2.6 has no upstream that changes without a load (its
dynamic upstreams need DNS, and `{file.*}` placeholders came later), so
the one address that must change lives here instead.

The edge dials a new upstream connection per request (keep-alive off
towards the switchboard), so a request after a swap never rides a pooled
connection to the old instance; a request already on its way finishes where
it started. An abstract socket has no file to go stale or to outgrow the
108-byte path limit, and the state directory's digest in its name keeps two
state directories on one host apart.

The daemon (`main`, run with the service's Python) holds the table
only in memory: `Switchboard.apply` sends the whole table over a control
socket and returns once it is in effect, starting the daemon first when
nothing answers. The edge persists the table (`edge/routes.json`) and sends
it again after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import deploy
from deploy.providers.commands import spawn
from deploy.providers.edge import pidfile
from deploy.providers.types import ProviderError

log = logging.getLogger(__name__)

Table = Mapping[str, tuple[str, int]]  # domain -> the endpoint of its live instance
CHUNK = 65536
CONTROL_LIMIT = 16 << 20  # the longest table accepted: some 200,000 domains
# imported and called, not run with `-m`: the module keeps its one name (no __main__ twin)
RUN_MAIN = (
    "import sys; from deploy.providers.edge.switchboard import main; sys.exit(main(sys.argv[1:]))"
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Switchboard:
    """The switchboard of one edge state directory, seen from the service."""

    def __init__(self, edge_dir: Path, python: str = sys.executable):
        self.dir = edge_dir
        self.python = python
        self.prefix = f"swapyard-edge-{_digest(str(edge_dir.resolve()))}"

    def name(self, domain: str) -> str:
        """The abstract socket name the switchboard listens on for `domain`."""
        return f"{self.prefix}-{_digest(domain.lower())}"

    def dial(self, domain: str) -> str:
        """The address the edge Caddy dials for `domain` (Caddy's network address syntax)."""
        return f"unix/@{self.name(domain)}"

    @property
    def control(self) -> str:
        """The abstract socket name of the daemon's control socket."""
        return f"{self.prefix}-control"

    @property
    def pidfile(self) -> Path:
        """Where the daemon writes its pid once it holds the control socket."""
        return self.dir / "switchboard.pid"

    def apply(self, table: Table, timeout: float = 15) -> None:
        """Put `table` in effect: listen for its domains, forward each to its endpoint.

        Starts the daemon when nothing answers on the control socket. Raises
        `ProviderError` when it does not answer within `timeout` or refuses.
        """
        message = json.dumps({d: list(e) for d, e in table.items()}).encode() + b"\n"
        deadline = time.monotonic() + timeout
        started = False
        while True:
            try:
                answer = self._send(message, max(deadline - time.monotonic(), 0.1))
            except (ConnectionError, FileNotFoundError):
                answer = None  # not listening, or it died while answering: the table is resent
            if answer == "ok":
                return
            if answer:
                raise ProviderError(f"the edge's switchboard refused the routes: {answer}")
            if time.monotonic() > deadline:
                break
            if not started and pidfile.live_pid(self.pidfile, str(self.dir)) is None:
                self._start()
                started = True
            time.sleep(0.05)
        raise ProviderError(
            f"the edge's switchboard did not answer within {timeout:g} s; "
            f"see {self.dir / 'switchboard.log'}"
        )

    def _send(self, message: bytes, timeout: float) -> str:
        """Send `message` on the control socket; its one-line answer ('' at EOF)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(f"\0{self.control}")
                sock.sendall(message)
                return sock.makefile("rb").readline(4096).decode(errors="replace").strip()
            except TimeoutError as exc:
                raise ProviderError(
                    f"the edge's switchboard accepted but did not answer in {timeout:.1f} s"
                ) from exc

    def _start(self) -> None:
        root = str(Path(deploy.__file__).resolve().parents[1])
        env_path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        argv = [self.python, "-c", RUN_MAIN, str(self.dir)]
        spawn(argv, log_path=self.dir / "switchboard.log", env={"PYTHONPATH": env_path})

    def is_running(self) -> bool:
        """True while the daemon of this state directory lives."""
        return pidfile.live_pid(self.pidfile, str(self.dir)) is not None

    def stop(self, timeout: float = 15) -> None:
        """Stop the daemon; connections in flight through it are cut."""
        pidfile.stop(self.pidfile, str(self.dir), timeout)


# -- the daemon ----------------------------------------------------------------
class _Daemon:
    """Listeners per domain and the table they forward by, in one asyncio loop."""

    def __init__(self, board: Switchboard):
        self.board = board
        self.table: dict[str, tuple[str, int]] = {}
        self.listeners: dict[str, asyncio.Server] = {}
        self.applying = asyncio.Lock()  # one table at a time, whoever sends it

    async def serve(self) -> None:
        control = _bind(self.board.control)
        if control is None:
            sys.exit(f"another switchboard already serves {self.board.dir}")
        self.board.pidfile.write_text(f"{os.getpid()}\n")
        server = await asyncio.start_unix_server(self._control, sock=control, limit=CONTROL_LIMIT)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        log.info("switchboard for %s listening", self.board.dir)
        await stopping.wait()
        server.close()
        for listener in self.listeners.values():
            listener.close()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            async with self.applying:
                answer = await self._apply(json.loads(line))
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            answer = f"error: a malformed table ({exc})"
        except (TimeoutError, OSError) as exc:
            answer = f"error: {exc or type(exc).__name__}"
        with contextlib.suppress(OSError):
            writer.write(answer.encode() + b"\n")
            await writer.drain()
            writer.close()

    async def _apply(self, raw: dict[str, list[object]]) -> str:
        table = {str(d).lower(): (str(e[0]), int(str(e[1]))) for d, e in raw.items()}
        for domain in table.keys() - self.listeners.keys():
            sock = _bind(self.board.name(domain))
            if sock is None:
                return f"error: the address for {domain} is taken by another process"
            self.listeners[domain] = await asyncio.start_unix_server(
                partial(self._forward, domain), sock=sock, backlog=1024
            )
        self.table = table  # from here on, new connections go by the new table
        for domain in self.listeners.keys() - table.keys():
            self.listeners.pop(domain).close()  # connections in flight finish
        return "ok"

    async def _forward(
        self, domain: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        endpoint = self.table.get(domain)
        try:
            if endpoint is None:
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*endpoint), 10
                )
            except (TimeoutError, OSError) as exc:
                log.warning("%s: cannot reach %s:%s: %s", domain, *endpoint, exc)
                return
            await _relay(reader, writer, up_reader, up_writer)
        finally:
            writer.close()


def _bind(name: str) -> socket.socket | None:
    """A listening abstract unix socket `name`, or None when another process holds it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0{name}")
    except OSError:
        sock.close()
        return None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _relay(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until both ends are done; an error on either side cuts both."""

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            a_writer.transport.abort()
            b_writer.transport.abort()

    try:
        await asyncio.gather(pump(a_reader, b_writer), pump(b_reader, a_writer))
    finally:
        b_writer.close()


def main(argv: list[str]) -> int:
    """Run the switchboard of the edge directory `argv[0]` until SIGTERM."""
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: switchboard <edge state directory>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_Daemon(Switchboard(Path(argv[0]))).serve())
    return 0
