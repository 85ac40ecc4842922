"""Real authoritative DNS servers for the DNS drivers' tests: BIND 9 and PowerDNS on loopback.

Each server is started for one test zone (default `swapyard.test`) in its own
temporary directory, on a free port chosen at run time, with a TSIG key
(hmac-sha256, secret from `secrets`) allowed to update the zone, and one
record swapyard does not own (`foreign.<zone> A 192.0.2.99`) so tests can
check it survives. `start_bind` / `start_pdns` are plain helpers (the bench
uses them without pytest); `bind_server`, `pdns_server` and `dns_server`
(parametrized over both) are session fixtures built on them.

The PowerDNS database is created from the schema file the
pdns-backend-sqlite3 package ships (found with `dpkg -L` at run time), and
the zone is filled with `pdnsutil`, as an operator would.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from deploy.dns.base import DnsDriver, ZoneAccess
from deploy.dns.records import DnsSpec
from deploy.dns.registry import open_zone, zone_access

ZONE = "swapyard.test"
FOREIGN = "foreign"  # foreign.<zone>: a record that is not swapyard's
FOREIGN_ADDRESS = "192.0.2.99"
START_TIMEOUT = 20.0
QUERY_TIMEOUT = 2.0
IN_CI = os.environ.get("SWAPYARD_NO_SKIPS") == "1"


class ServerStartError(RuntimeError):
    """A test DNS server did not start or did not answer in time."""


def require(program: str) -> str:
    """The path of `program`; skip the test (fail it under SWAPYARD_NO_SKIPS=1) when missing."""
    found = shutil.which(program)
    if found:
        return found
    message = f"{program} is not installed (scripts/setup --test installs it)"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise ServerStartError("no loopback port free for both UDP and TCP")


@dataclass
class DnsTestServer:
    """One running authoritative server for `zone`, and how to reach and ask it."""

    kind: str  # "bind" or "pdns"
    host: str
    port: int
    zone: str  # no trailing dot
    key_name: str
    key_secret: str
    key_algorithm: str
    workdir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        """`host:port`, as the `rfc2136` driver's `server` setting takes it."""
        return f"{self.host}:{self.port}"

    def access(self, **overrides: object) -> ZoneAccess:
        """The `ZoneAccess` of the `rfc2136` driver for this zone (fields overridable)."""
        fields: dict[str, object] = {
            "provider": "rfc2136",
            "zone": self.zone,
            "server": self.server,
            "key_name": self.key_name,
            "key_secret": self.key_secret,
            "key_algorithm": self.key_algorithm,
            "timeout": 5.0,
        }
        fields.update(overrides)
        return ZoneAccess(**fields)  # type: ignore[arg-type]

    def lookup(self, name: str, rdtype: str) -> tuple[str, list[str]]:
        """Ask this server directly over UDP (no recursion): (rcode name, sorted values).

        TXT values are each record's strings joined, like `NameRecords.marks`.
        """
        query = dns.message.make_query(name + ".", rdtype)
        query.flags &= ~dns.flags.RD
        response = dns.query.udp(query, self.host, port=self.port, timeout=QUERY_TIMEOUT)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, self.host, port=self.port, timeout=QUERY_TIMEOUT)
        wanted = dns.rdatatype.from_text(rdtype)
        values: list[str] = []
        for rrset in response.answer:
            if rrset.rdtype != wanted:
                continue
            for rdata in rrset:
                if wanted == dns.rdatatype.TXT:
                    values.append(b"".join(rdata.strings).decode())
                else:
                    values.append(rdata.to_text())
        return dns.rcode.to_text(response.rcode()), sorted(values)

    def query(self, name: str, rdtype: str) -> list[str]:
        """The values at `name`/`rdtype` (empty for NXDOMAIN and NODATA); other rcodes raise."""
        rcode, values = self.lookup(name, rdtype)
        if rcode not in ("NOERROR", "NXDOMAIN"):
            raise AssertionError(f"{self.kind} answered {rcode} for {name} {rdtype}")
        return values

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's own output."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (TERM, then KILL after 10 s)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the server answers the zone's SOA; raise with its log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                last = f"exited with status {self.process.returncode}"
                break
            try:
                rcode, soa = self.lookup(self.zone, "SOA")
                if rcode == "NOERROR" and soa:
                    return
                last = f"answered {rcode}"
            except (OSError, dns.exception.DNSException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"{self.kind} for zone {self.zone} on {self.server} did not answer its SOA within "
            f"{timeout:.0f} s ({last}); log tail:\n{self.log_tail()}"
        )


def new_key(name: str = "swapyard-test-key") -> tuple[str, str, str]:
    """(key name, base64 secret, algorithm) for a fresh hmac-sha256 TSIG key."""
    return name, base64.b64encode(secrets.token_bytes(32)).decode(), "hmac-sha256"


def _launch(server: DnsTestServer, argv: list[str]) -> DnsTestServer:
    with server.log.open("wb") as log:
        server.process = subprocess.Popen(
            argv, cwd=server.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server.wait_ready()
    return server


BIND_CONF = """\
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    dump-file "{dir}/named.dump";
    statistics-file "{dir}/named.stats";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key_name}" {{
    algorithm {algorithm};
    secret "{secret}";
}};
zone "{zone}" {{
    type primary;
    file "{zone}.zone";
    journal "{dir}/{zone}.zone.jnl";
    allow-update {{ key "{key_name}"; }};
}};
"""

ZONE_FILE = """\
$TTL 300
@        IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@        IN NS  ns.{zone}.
ns       IN A   127.0.0.1
{foreign} IN A   {foreign_address}
"""


def start_bind(workdir: Path, zone: str = ZONE) -> DnsTestServer:
    """Start BIND 9 (`named -g`) for `zone` in `workdir` on a free loopback port."""
    named = shutil.which("named")
    if named is None:
        raise ServerStartError("named is not installed (apt-get install bind9)")
    key_name, secret, algorithm = new_key()
    last: ServerStartError | None = None
    for _ in range(3):  # the free port can be taken between the check and named's bind
        port = free_port()
        (workdir / f"{zone}.zone").write_text(
            ZONE_FILE.format(zone=zone, foreign=FOREIGN, foreign_address=FOREIGN_ADDRESS)
        )
        journal = workdir / f"{zone}.zone.jnl"
        journal.unlink(missing_ok=True)
        conf = workdir / "named.conf"
        conf.write_text(
            BIND_CONF.format(
                dir=workdir,
                port=port,
                key_name=key_name,
                algorithm=algorithm,
                secret=secret,
                zone=zone,
            )
        )
        server = DnsTestServer(
            "bind", "127.0.0.1", port, zone, key_name, secret, algorithm, workdir,
            workdir / "named.log",
        )  # fmt: skip
        try:
            return _launch(server, [named, "-g", "-c", str(conf)])
        except ServerStartError as exc:
            last = exc
    assert last is not None
    raise last


def pdns_schema() -> Path:
    """The sqlite3 schema that the installed pdns-backend-sqlite3 package documents."""
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        raise ServerStartError("dpkg not found: cannot locate the PowerDNS sqlite3 schema")
    listing = subprocess.run(
        [dpkg, "-L", "pdns-backend-sqlite3"], capture_output=True, text=True, timeout=30
    )
    for line in listing.stdout.splitlines():
        if line.endswith("/schema.sqlite3.sql") and "/doc/" not in line:
            return Path(line)
    for line in listing.stdout.splitlines():
        if line.endswith("/schema.sqlite3.sql"):
            return Path(line)
    raise ServerStartError(
        "the PowerDNS sqlite3 schema (schema.sqlite3.sql) is not in pdns-backend-sqlite3: "
        + (listing.stderr.strip() or "package lists no such file")
    )


PDNS_CONF = """\
launch=gsqlite3
gsqlite3-database={dir}/pdns.sqlite3
local-address=127.0.0.1
local-port={port}
dnsupdate=yes
allow-dnsupdate-from=127.0.0.0/8
daemon=no
guardian=no
socket-dir={dir}
webserver=no
api=no
disable-syslog=yes
write-pid=no
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
zone-cache-refresh-interval=0
default-soa-content=ns.@ hostmaster.@ 1 3600 600 86400 60
loglevel=6
"""


def _pdnsutil(workdir: Path, *args: str) -> None:
    pdnsutil = shutil.which("pdnsutil")
    if pdnsutil is None:
        raise ServerStartError("pdnsutil is not installed (apt-get install pdns-server)")
    done = subprocess.run(
        [pdnsutil, f"--config-dir={workdir}", *args], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise ServerStartError(
            f"pdnsutil {' '.join(args)} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-500:]}"
        )


def start_pdns(workdir: Path, zone: str = ZONE) -> DnsTestServer:
    """Start PowerDNS (`pdns_server`, gsqlite3) for `zone` in `workdir` on a free loopback port."""
    pdns = shutil.which("pdns_server")
    if pdns is None:
        raise ServerStartError("pdns_server is not installed (apt-get install pdns-server)")
    key_name, secret, algorithm = new_key()
    database = workdir / "pdns.sqlite3"
    database.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.executescript(pdns_schema().read_text())
        db.commit()
    (workdir / "pdns.conf").write_text(PDNS_CONF.format(dir=workdir, port=53))
    _pdnsutil(workdir, "create-zone", zone, f"ns.{zone}")
    _pdnsutil(workdir, "add-record", zone, "ns", "A", "300", "127.0.0.1")
    _pdnsutil(workdir, "add-record", zone, FOREIGN, "A", "300", FOREIGN_ADDRESS)
    _pdnsutil(workdir, "import-tsig-key", key_name, algorithm, secret)
    _pdnsutil(workdir, "set-meta", zone, "TSIG-ALLOW-DNSUPDATE", key_name)
    last: ServerStartError | None = None
    for _ in range(3):
        port = free_port()
        (workdir / "pdns.conf").write_text(PDNS_CONF.format(dir=workdir, port=port))
        server = DnsTestServer(
            "pdns", "127.0.0.1", port, zone, key_name, secret, algorithm, workdir,
            workdir / "pdns.log",
        )  # fmt: skip
        try:
            return _launch(server, [pdns, f"--config-dir={workdir}"])
        except ServerStartError as exc:
            last = exc
    assert last is not None
    raise last


def open_test_dns(dns: DnsSpec) -> DnsDriver:
    """A swap engine's `open_dns` for tests: the spec's settings carry the key itself (there
    is no secret store), as `rfc2136_spec` writes them."""
    return open_zone(zone_access(dns.settings, lambda _name: None, timeout=5.0))


def rfc2136_spec(
    server: DnsTestServer, ttl: int, *, key_secret: str | None = None, owner: str = "test-owner"
) -> DnsSpec:
    """The DNS part of a deploy spec writing to `server`'s zone (its key, or `key_secret`, in
    the settings)."""
    settings = {
        "provider": "rfc2136",
        "zone": server.zone,
        "ttl": ttl,
        "server": server.server,
        "key_name": server.key_name,
        "key_secret": key_secret or server.key_secret,
        "key_algorithm": server.key_algorithm,
    }
    return DnsSpec(settings, owner)


def nsupdate(server: DnsTestServer, commands: str, *, secret: str | None = None) -> None:
    """Send `commands` (nsupdate's language, without `server`/`zone`/`send`) with the
    `nsupdate` program, signed with the server's key (or `secret`); raise on failure."""
    program = shutil.which("nsupdate")
    if program is None:
        raise ServerStartError("nsupdate is not installed (apt-get install bind9-dnsutils)")
    script = f"server {server.host} {server.port}\nzone {server.zone}.\n{commands.strip()}\nsend\n"
    key = f"{server.key_algorithm}:{server.key_name}:{secret or server.key_secret}"
    done = subprocess.run(
        [program, "-t", "5", "-y", key], input=script, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise AssertionError(
            f"nsupdate to {server.kind} failed ({done.returncode}): {done.stderr.strip()}"
        )


STARTERS = {"bind": start_bind, "pdns": start_pdns}
PROGRAMS = {"bind": "named", "pdns": "pdns_server"}


@contextlib.contextmanager
def running(kind: str, zone: str = ZONE) -> Iterator[DnsTestServer]:
    """A `kind` server ("bind" or "pdns") for `zone` in a temporary directory, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"swapyard-{kind}-") as tmp:
        server = STARTERS[kind](Path(tmp), zone)
        try:
            yield server
        finally:
            server.stop()


def _server_fixture(kind: str) -> Iterator[DnsTestServer]:
    require(PROGRAMS[kind])
    if kind == "pdns":
        require("pdnsutil")
    try:
        with running(kind) as server:
            yield server
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def bind_server() -> Iterator[DnsTestServer]:
    """BIND 9 serving `swapyard.test` on loopback for the whole session."""
    yield from _server_fixture("bind")


@pytest.fixture(scope="session")
def pdns_server() -> Iterator[DnsTestServer]:
    """PowerDNS (gsqlite3) serving `swapyard.test` on loopback for the whole session."""
    yield from _server_fixture("pdns")


@pytest.fixture(params=["bind", "pdns"])
def dns_server(request: pytest.FixtureRequest) -> DnsTestServer:
    """Each test that takes it runs against BIND 9 and against PowerDNS."""
    server: DnsTestServer = request.getfixturevalue(f"{request.param}_server")
    return server
