"""A second, real Docker engine behind mutual TLS: the inside of a remote instance, for tests.

`tls_engine` (session fixture) starts Debian's `dockerd` with everything of its own
under a temporary directory — data root, exec root (its own containerd), pid file,
unix socket, an empty config file — listening on `tcp://127.0.0.1:<free port>` with
`--tlsverify` and certificates from a `CertificateAuthority` in the same directory.
It must leave the machine's main engine alone: a default bridge of its own,
created here (not `--bridge=none`: with it dockerd 20.10 deletes the link `docker0`
at start, the main engine's default bridge), `--iptables=false --ip-masq=false
--ip-forward=false` (no rules, no sysctl), a cgroup parent of its own, and networks
from an address pool that no route on this machine overlaps. One iptables rule is added
(and removed at the end): where `br_netfilter` sends bridged frames through the FORWARD
chain, whose policy the main engine sets to DROP, traffic from that pool to that pool
is accepted, so containers of the test engine reach each other on their networks. At the end of the
session its containers are removed, the daemon is stopped and the directory deleted.

To use it from another test folder (the `lxd` or cloud drivers' tests), import the
fixture into that folder's conftest:

    from tests.deploy.providers.remote.engines import tls_engine  # noqa: F401

then take `tls_engine: TLSEngine` as an argument: `tls_engine.remote("test")` is a
`RemoteEngine` on it, `tls_engine.ca` the CA whose client certificate it accepts,
`tls_engine.cli_env()` the environment for `docker`/`docker-compose` to reach it, and
`tls_engine.local()` a plain client on its unix socket (setup and inspection only).
Tests needing root skip without it (CI runs as root, where a skip fails the run).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.providers.remote.engine import RemoteEngine
from deploy.providers.remote.pki import CertificateAuthority
from tests.deploy.conftest import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 60


def routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks this machine routes (from /proc/net/route)."""
    found = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        dest, mask = (int(fields[i], 16).to_bytes(4, "little") for i in (1, 7))
        net = ipaddress.IPv4Network((ipaddress.IPv4Address(dest), str(ipaddress.IPv4Address(mask))))
        if net.prefixlen:  # the default route overlaps everything
            found.append(net)
    return found


def free_pool() -> ipaddress.IPv4Network:
    """A /16 under 10.0.0.0/8 that no route of this machine overlaps."""
    taken = routes()
    for second in range(200, 250):
        pool = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        if not any(pool.overlaps(net) for net in taken):
            return pool
    raise RuntimeError("no free /16 under 10.200.0.0-10.249.0.0 for the test engine's networks")


@dataclass(frozen=True)
class TLSEngine:
    """A running test engine: where it listens and the CA whose client it accepts."""

    directory: Path
    host: str
    port: int
    ca: CertificateAuthority
    socket: Path
    pool: ipaddress.IPv4Network
    bridge: str
    pid: int

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def remote(self, project: str, **kwargs: Any) -> RemoteEngine:
        """A `RemoteEngine` on this engine for compose project `project`."""
        return RemoteEngine(
            instance="test-engine",
            host=self.host,
            port=self.port,
            credentials=self.ca.client(),
            project=project,
            **kwargs,
        )

    def cli_env(self) -> dict[str, str]:
        """Environment for the Docker CLI or docker-compose to reach it over mutual TLS."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.ca.client()
        return {
            **env,
            "DOCKER_HOST": f"tcp://{self.host}:{self.port}",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(self.ca.directory),
        }

    def local(self) -> Any:
        """A plain docker SDK client on its unix socket (for setup and inspection)."""
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=60)


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    import docker

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if path.exists():
            with contextlib.suppress(Exception):
                client = docker.DockerClient(base_url=f"unix://{path}", timeout=5)
                client.ping()
                client.close()
                return
        time.sleep(0.2)
    raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running_engine(port: int | None = None) -> Iterator[TLSEngine]:
    """Start a test engine (see the module docstring); stop and remove it on exit."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        pytest.skip("a second dockerd needs root")
    # short: the unix sockets of dockerd and its containerd live below it (108 bytes at most)
    directory = Path(tempfile.mkdtemp(prefix="sy-engine-"))
    os.chmod(directory, 0o755)
    ca = CertificateAuthority(directory / "ca")
    tls = directory / "tls"
    tls.mkdir()
    server = ca.issue_server("test-engine", [HOST])
    (tls / "ca.pem").write_bytes(server.ca)
    (tls / "server.pem").write_bytes(server.certificate)
    (tls / "server-key.pem").write_bytes(server.key)
    os.chmod(tls / "server-key.pem", 0o600)
    (directory / "daemon.json").write_text("{}\n")
    port = port or free_port()
    pool = free_pool()
    bridge = f"sy-{directory.name[-8:]}".replace("_", "0")
    gateway = next(pool.subnets(new_prefix=24))
    rule = ["FORWARD", "-s", str(pool), "-d", str(pool), "-j", "ACCEPT"]
    rule += ["-m", "comment", "--comment", f"swapyard test engine {directory.name}"]
    sock = directory / "docker.sock"
    log = directory / "dockerd.log"
    proc: subprocess.Popen[bytes] | None = None
    argv = [
        "dockerd",
        f"--config-file={directory / 'daemon.json'}",
        f"--data-root={directory / 'data'}",
        f"--exec-root={directory / 'exec'}",
        f"--pidfile={directory / 'docker.pid'}",
        f"--host=unix://{sock}",
        f"--host=tcp://{HOST}:{port}",
        "--tlsverify",
        f"--tlscacert={tls / 'ca.pem'}",
        f"--tlscert={tls / 'server.pem'}",
        f"--tlskey={tls / 'server-key.pem'}",
        f"--bridge={bridge}",
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        f"--cgroup-parent={directory.name}",
        f"--default-address-pool=base={pool},size=24",
        "--storage-driver=overlay2",
    ]
    try:
        for cmd in (
            ["iptables", "-w", "-I", *rule],
            ["ip", "link", "add", bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{gateway[1]}/{gateway.prefixlen}", "dev", bridge],
            ["ip", "link", "set", bridge, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait_for_socket(sock, proc, log)
        yield TLSEngine(directory, HOST, port, ca, sock, pool, bridge, proc.pid)
    finally:
        if proc is not None:
            _stop(directory, sock, proc)
        shutil.rmtree(directory, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        subprocess.run(["iptables", "-w", "-D", *rule], check=False, capture_output=True)


def _stop(directory: Path, sock: Path, proc: subprocess.Popen[bytes]) -> None:
    """Remove the engine's containers, stop it, unmount what is left, delete its directory."""
    import docker

    with contextlib.suppress(Exception):
        client = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
        for c in client.containers.list(all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        client.close()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(f"{directory}/")
    ]
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_engine() -> Iterator[TLSEngine]:
    """A second Docker engine on loopback behind mutual TLS, for the whole session."""
    with running_engine() as engine:
        yield engine
