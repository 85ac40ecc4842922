"""The `rfc2136` DNS driver: a zone's primary server, read by direct queries and changed by
RFC 2136 UPDATE messages signed with a TSIG key.

This is how BIND 9, PowerDNS, Knot and most self-hosted authoritative servers
take changes, so it is the driver for an operator who runs their own DNS.
Reads ask the primary itself over TCP (no resolver, no cache, answers never
truncated), signed with the key since some servers answer keyed clients only.
A whole `apply` is ONE update message: per name, prerequisites that its A
and AAAA sets are still what `read` saw, then the deletion of its A, AAAA and
mark TXT sets and the addition of the new ones. The server applies an update
all or nothing, so a name never resolves to nothing, nor to old and new
addresses together, and a zone that moved on since `read` is left untouched
(`DnsConflict`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from deploy.dns.base import (
    DnsConflict,
    DnsDriver,
    DnsError,
    DnsRefused,
    DnsUnreachable,
    NameChange,
    NameRecords,
    ZoneAccess,
    in_zone,
    mark_name,
)

DEFAULT_PORT = 53

# The names `tsig-keygen -a` takes (and prints in its `algorithm` line), and dnspython's own.
ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-md5.sig-alg.reg.int": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}

# Update prerequisites that did not hold: the zone changed since `read`.
CONFLICT_RCODES = {
    dns.rcode.YXDOMAIN,
    dns.rcode.YXRRSET,
    dns.rcode.NXRRSET,
    dns.rcode.NXDOMAIN,
}
REFUSED_RCODES = {dns.rcode.NOTAUTH, dns.rcode.REFUSED}

# What dnspython raises when the answer's TSIG says the server rejected our signature, or
# when the answer itself fails verification with our key.
TSIG_ERRORS: tuple[type[Exception], ...] = (
    dns.tsig.PeerError,
    dns.tsig.BadSignature,
    dns.tsig.BadTime,
    dns.tsig.BadAlgorithm,
    dns.message.UnknownTSIGKey,
)

# What the server's TSIG error means for the operator.
TSIG_MEANINGS: dict[type[Exception], str] = {
    dns.tsig.PeerBadKey: "BADKEY: the server does not know this key name (or its algorithm)",
    dns.tsig.PeerBadSignature: "BADSIG: the server's secret for this key differs",
    dns.tsig.PeerBadTime: "BADTIME: this machine's clock and the server's differ too much",
    dns.tsig.PeerBadTruncation: "BADTRUNC: the server refused the truncated signature",
}

MAX_TXT_STRING = 255


def parse_server(server: str) -> tuple[str, int]:
    """(host, port) from `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.

    Raises ValueError naming what is wrong; the port defaults to 53.
    """
    text = server.strip()
    if not text:
        raise ValueError("the server is empty")
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{server!r}: '[' without a closing ']'")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{server!r}: expected ':port' after ']'")
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{server!r}: {host!r} in brackets is not an IPv6 address") from None
    elif text.count(":") > 1:
        host = text  # a bare IPv6 literal: its colons are not a port separator
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"{server!r} is not an IPv6 address (write [address]:port for a port)"
            ) from None
    else:
        host, sep, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if sep else None
    if not host:
        raise ValueError(f"{server!r} has no host")
    if port_text is None:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{server!r}: port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _resolve(host: str, port: int, timeout: float) -> list[tuple[int, str]]:
    """[(address family, address)] of `host`, within `timeout` (getaddrinfo has no timeout of
    its own, so it runs in a daemon thread that is abandoned when it overruns)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        return [(family, str(address))]
    result: list[list[tuple[int, str]]] = []
    failure: list[OSError] = []

    def lookup() -> None:
        """Resolve `host` in the background thread."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = [(int(info[0]), str(info[4][0])) for info in infos]
            result.append(list(dict.fromkeys(found)))
        except OSError as exc:
            failure.append(exc)

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if result:
        return result[0]
    if failure:
        raise OSError(f"cannot resolve {host}: {failure[0]}")
    raise TimeoutError(f"resolving {host} took more than {timeout:g} s")


def _txt(value: str) -> dns.rdata.Rdata:
    """One TXT record holding `value`, cut into strings of at most 255 bytes."""
    data = value.encode()
    chunks = [data[i : i + MAX_TXT_STRING] for i in range(0, len(data), MAX_TXT_STRING)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def _split(addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    """The IPv4 and the IPv6 addresses of `addresses`, each in canonical form."""
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        address = ipaddress.ip_address(text)
        (v4 if address.version == 4 else v6).append(str(address))
    return v4, v6


def _dns_name(text: str, zone: str, what: str) -> dns.name.Name:
    """`text` as an absolute DNS name; a DnsError naming `what` when it cannot be one."""
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise DnsError(f"zone {zone}: {what} {text!r} is not a valid DNS name: {exc}") from None


class Rfc2136Driver(DnsDriver):
    """One zone on its primary server: TCP queries to read, one signed UPDATE to apply."""

    name = "rfc2136"

    def __init__(self, access: ZoneAccess):
        super().__init__(access)
        self.origin = _dns_name(self.zone, self.zone, "the zone")
        if not access.server:
            raise DnsError(f"zone {self.zone}: the rfc2136 driver needs `server` (host[:port])")
        try:
            self.host, self.port = parse_server(access.server)
        except ValueError as exc:
            raise DnsError(f"zone {self.zone}: server {exc}") from None
        self.server = access.server
        self._addresses: list[tuple[int, str]] | None = None
        self.keyring: dict[dns.name.Name, dns.tsig.Key] | None = None
        self.keyname: dns.name.Name | None = None
        self.algorithm = dns.tsig.HMAC_SHA256
        self._load_key(access)

    def _load_key(self, access: ZoneAccess) -> None:
        """Build the TSIG key from key_name/key_secret/key_algorithm (none: unsigned)."""
        if not access.key_name and not access.key_secret:
            return
        if not access.key_name or not access.key_secret:
            missing = "key_secret" if access.key_name else "key_name"
            raise DnsError(
                f"zone {self.zone}: a TSIG key needs key_name and key_secret ({missing} is empty)"
            )
        wanted = access.key_algorithm.strip().lower().rstrip(".")
        if wanted not in ALGORITHMS:
            known = ", ".join(sorted(a for a in ALGORITHMS if "." not in a))
            raise DnsError(
                f"zone {self.zone}: TSIG algorithm {access.key_algorithm!r} of key "
                f"{access.key_name} is not supported (known: {known})"
            )
        try:
            secret = base64.b64decode(access.key_secret.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise DnsError(
                f"zone {self.zone}: the secret of TSIG key {access.key_name} is not base64 "
                "(use the `secret` line that tsig-keygen prints)"
            ) from None
        self.algorithm = ALGORITHMS[wanted]
        self.keyname = _dns_name(access.key_name, self.zone, "the TSIG key name")
        self.keyring = {self.keyname: dns.tsig.Key(self.keyname, secret, self.algorithm)}

    # --- helpers ------------------------------------------------------------------

    def _where(self) -> str:
        """How messages name the server and the key."""
        key = f"key {self.access.key_name}" if self.keyname else "no key"
        return f"server {self.server} ({key})"

    def _sign(self, message: dns.message.Message) -> None:
        """Sign `message` with the zone's key, when there is one."""
        if self.keyring is not None:
            message.use_tsig(self.keyring, keyname=self.keyname, algorithm=self.algorithm)

    @contextmanager
    def _connection(self, deadline: float) -> Iterator[socket.socket]:
        """A TCP connection to the server, every step bounded by `deadline`."""
        try:
            if self._addresses is None:
                self._addresses = _resolve(self.host, self.port, self._left(deadline))
            addresses = self._addresses
        except TimeoutError:
            raise DnsUnreachable(
                f"zone {self.zone}: server {self.server}: name not resolved within "
                f"{self.access.timeout:g} s"
            ) from None
        except OSError as exc:
            raise DnsUnreachable(f"zone {self.zone}: server {self.server}: {exc}") from None
        sock: socket.socket | None = None
        try:
            sock = self._connect(addresses, deadline)
            yield sock
        except DnsError:
            raise  # DnsRefused and DnsUnreachable are OSErrors too: let them through as they are
        except (TimeoutError, dns.exception.Timeout):
            raise DnsUnreachable(
                f"zone {self.zone}: {self._where()} did not answer within {self.access.timeout:g} s"
            ) from None
        except (ConnectionError, EOFError, OSError) as exc:
            what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DnsUnreachable(
                f"zone {self.zone}: {self._where()}: {what or type(exc).__name__}"
            ) from None
        finally:
            if sock is not None:
                sock.close()

    def _connect(self, addresses: list[tuple[int, str]], deadline: float) -> socket.socket:
        """A socket connected to the first of `addresses` that takes the connection (a name
        such as localhost can resolve to ::1 first while the server listens on 127.0.0.1)."""
        failure: OSError | None = None
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._left(deadline))
                sock.connect((address, self.port))
                return sock
            except TimeoutError:
                sock.close()
                raise
            except OSError as exc:  # refused, or no route to this one: try the next
                sock.close()
                failure = exc
            except BaseException:
                sock.close()
                raise
        assert failure is not None
        raise failure

    def _left(self, deadline: float) -> float:
        """Seconds left before `deadline`; a timeout once it has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _exchange(
        self, sock: socket.socket, message: dns.message.Message, deadline: float, what: str
    ) -> dns.message.Message:
        """Send `message` on `sock` and return the verified answer; TSIG failures and
        refusals raise `DnsRefused`."""
        try:
            wire = message.to_wire()
        except dns.exception.TooBig:
            raise DnsError(
                f"zone {self.zone}: {what} does not fit in one DNS message (64 KiB): "
                "fewer names or addresses at a time"
            ) from None
        sock.settimeout(self._left(deadline))
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        size = int.from_bytes(self._receive(sock, 2, deadline), "big")
        answer = self._receive(sock, size, deadline)
        try:
            response = dns.message.from_wire(
                answer, keyring=self.keyring, request_mac=message.mac if self.keyring else b""
            )
        except TSIG_ERRORS as exc:
            meaning = TSIG_MEANINGS.get(type(exc)) or f"{type(exc).__name__} ({exc})"
            raise DnsRefused(
                f"zone {self.zone}: {self._where()} rejected the key for {what}: {meaning}"
            ) from None
        except dns.exception.FormError as exc:
            unsigned = self._unverified(answer)
            if self.keyring is not None and unsigned is not None and unsigned.tsig is None:
                # Some servers (PowerDNS) answer a key they reject without any signature.
                raise DnsRefused(
                    f"zone {self.zone}: {self._where()} answered {what} with "
                    f"{dns.rcode.to_text(unsigned.rcode())}, unsigned: it does not accept the key"
                ) from None
            raise DnsError(
                f"zone {self.zone}: {self._where()} sent a malformed answer to {what}: {exc}"
            ) from None
        if not message.is_response(response):
            raise DnsError(
                f"zone {self.zone}: {self._where()} answered {what} with another query's reply"
            )
        rcode = response.rcode()
        if rcode in REFUSED_RCODES:
            raise DnsRefused(
                f"zone {self.zone}: {self._where()} refused {what}: {dns.rcode.to_text(rcode)} "
                "(it is not the zone's primary, or it does not let this key do that)"
            )
        return response

    @staticmethod
    def _unverified(answer: bytes) -> dns.message.Message | None:
        """`answer` parsed without checking its signature (to report what a server said)."""
        try:
            return dns.message.from_wire(answer, ignore_trailing=True)
        except dns.exception.DNSException:
            return None

    def _receive(self, sock: socket.socket, size: int, deadline: float) -> bytes:
        """Exactly `size` bytes from `sock` before `deadline`."""
        data = b""
        while len(data) < size:
            sock.settimeout(self._left(deadline))
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError("the server closed the connection without answering")
            data += chunk
        return data

    # --- the contract ---------------------------------------------------------------

    def read(self, names: Sequence[str]) -> Mapping[str, NameRecords]:
        """Each name's A/AAAA values and TTL and its mark TXT, asked of the primary over TCP."""
        for name in names:
            self._check_name(name)
        deadline = time.monotonic() + self.access.timeout
        found: dict[str, NameRecords] = {}
        if not names:
            return found
        with self._connection(deadline) as sock:
            for name in names:
                a, ttl_a = self._query(sock, name, dns.rdatatype.A, deadline)
                aaaa, ttl_aaaa = self._query(sock, name, dns.rdatatype.AAAA, deadline)
                txt, _ = self._query(sock, mark_name(name), dns.rdatatype.TXT, deadline)
                ttls = [t for t in (ttl_a, ttl_aaaa) if t is not None]
                found[name] = NameRecords(
                    name=name,
                    addresses=tuple(sorted(a + aaaa)),
                    ttl=max(ttls) if ttls else None,
                    marks=tuple(sorted(txt)),
                )
        return found

    def _query(
        self, sock: socket.socket, name: str, rdtype: dns.rdatatype.RdataType, deadline: float
    ) -> tuple[list[str], int | None]:
        """The values of one rrset and its TTL ([] and None for NXDOMAIN/NODATA)."""
        qname = _dns_name(name, self.zone, "the name")
        query = dns.message.make_query(qname, rdtype)
        query.flags &= ~dns.flags.RD
        self._sign(query)
        what = f"the query {name} {dns.rdatatype.to_text(rdtype)}"
        response = self._exchange(sock, query, deadline, what)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return [], None
        if rcode != dns.rcode.NOERROR:
            raise DnsError(
                f"zone {self.zone}: {self._where()} answered {what} with {dns.rcode.to_text(rcode)}"
            )
        for rrset in response.answer:
            if rrset.name != qname or rrset.rdtype != rdtype:
                continue
            if rdtype == dns.rdatatype.TXT:
                values = [b"".join(rd.strings).decode(errors="replace") for rd in rrset]
            else:
                values = [str(ipaddress.ip_address(rd.address)) for rd in rrset]
            return values, rrset.ttl
        return [], None

    def _check_name(self, name: str) -> None:
        """Refuse a name outside the zone, or no DNS name, before anything is sent."""
        if not in_zone(name, self.zone):
            raise DnsError(f"zone {self.zone}: {name} is not in the zone")
        _dns_name(mark_name(name), self.zone, "the name")

    def apply(self, changes: Sequence[NameChange]) -> None:
        """All `changes` in one UPDATE, conditional on each name's A/AAAA being `expect`'s."""
        if not changes:
            return
        update = dns.update.UpdateMessage(self.origin)
        for change in changes:
            self._check_name(change.name)
            try:
                old_v4, old_v6 = _split(change.expect.addresses)
                new_v4, new_v6 = _split(change.addresses)
            except ValueError as exc:
                raise DnsError(f"zone {self.zone}: {change.name}: {exc}") from None
            name = _dns_name(change.name, self.zone, "the name")
            mark = _dns_name(mark_name(change.name), self.zone, "the mark name")
            for rdtype, old in (("A", old_v4), ("AAAA", old_v6)):
                if old:
                    update.present(name, rdtype, *old)
                else:
                    update.absent(name, rdtype)
            update.delete(name, "A")
            update.delete(name, "AAAA")
            update.delete(mark, "TXT")
            if not change.addresses:
                continue
            if new_v4:
                update.add(name, change.ttl, "A", *new_v4)
            if new_v6:
                update.add(name, change.ttl, "AAAA", *new_v6)
            update.add(mark, change.ttl, _txt(change.mark))
        self._sign(update)
        names = ", ".join(c.name for c in changes)
        what = f"the update of {names}"
        deadline = time.monotonic() + self.access.timeout
        with self._connection(deadline) as sock:
            response = self._exchange(sock, update, deadline, what)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        if rcode in CONFLICT_RCODES:
            raise DnsConflict(
                f"zone {self.zone}: {self._where()} rejected {what}: "
                f"{dns.rcode.to_text(rcode)} (a prerequisite failed: the records changed since "
                "they were read; nothing was written)"
            )
        raise DnsError(
            f"zone {self.zone}: {self._where()} answered {what} with {dns.rcode.to_text(rcode)}"
        )
