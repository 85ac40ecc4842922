"""A slow git transport for crash tests: `git daemon` behind a throttling TCP proxy.

The daemon serves the test's bare repositories as git:// URLs on loopback; the
proxy forwards its answers at a fixed rate and counts the bytes, and can hold
the stream at a chosen byte count, so that a test kills the fetching process
exactly there, mid-transfer, rather than wherever a timer happens to land.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path

from tests.service.conftest import free_port, wait_for


def _git_daemon() -> str:
    """`git daemon` is a git subcommand; some distributions ship it apart from git."""
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not (Path(exec_path) / "git-daemon").exists():
        raise RuntimeError(f"git daemon is not installed (no git-daemon in {exec_path})")
    return shutil.which("git") or "git"


class GitDaemon:
    """`git daemon` exporting every repository under `base`, on 127.0.0.1."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GitDaemon:
        self.proc = subprocess.Popen(
            [
                _git_daemon(),
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.base}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listens, what=f"git daemon on port {self.port}")
        return self

    def _listens(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


class ThrottlingProxy:
    """Forwards 127.0.0.1:`port` to `target`; the answers at `rate` bytes a second.

    `sent` counts the bytes forwarded to clients, over all connections. After
    `hold(n)`, the stream stops once `n` more bytes went through and `held` is set;
    `release()` drops every connection and forwards freely again.
    """

    CHUNK = 4096

    def __init__(self, target: tuple[str, int], rate: int):
        self.target = target
        self.rate = rate
        self.sent = 0
        self.held = threading.Event()
        self._hold_at: int | None = None
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> ThrottlingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def hold(self, after: int) -> None:
        with self._lock:
            self.held.clear()
            self._hold_at = self.sent + after

    def release(self) -> None:
        with self._lock:
            self._hold_at = None
            conns, self._conns = self._conns, []
        for conn in conns:
            _close(conn)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        self.release()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        with suppress(OSError):
            while data := client.recv(65536):
                server.sendall(data)
            server.shutdown(socket.SHUT_WR)

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(self.CHUNK):
                while data:
                    data = data[self._forward(client, data) :]
            client.shutdown(socket.SHUT_WR)
        except OSError:
            _close(client)

    def _forward(self, client: socket.socket, data: bytes) -> int:
        """Send what the rate and the hold allow of `data`; return how much was sent."""
        with self._lock:
            room = len(data) if self._hold_at is None else self._hold_at - self.sent
        if room <= 0:
            self.held.set()
            time.sleep(0.02)  # until release() drops the connection
            if client.fileno() < 0:
                raise OSError("connection dropped while held")
            return 0
        part = data[:room]
        client.sendall(part)
        with self._lock:
            self.sent += len(part)
        time.sleep(len(part) / self.rate)
        return len(part)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
