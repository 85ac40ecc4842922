"""swapyard's own certificate authority: who may talk to an instance's Docker engine.

An instance's engine listens on TCP with `--tlsverify`: it accepts only a client
certificate signed by this CA, and swapyard accepts only an engine whose certificate
this CA signed for the address it dialled. The CA lives in a directory the caller
owns (the provider's state directory), mode 0700:

    ca.pem       the CA certificate (pushed to every instance)
    ca-key.pem   its key, 0600; it never leaves the control plane
    cert.pem     swapyard's client certificate (extended key usage clientAuth)
    key.pem      its key, 0600

`ca.pem`, `cert.pem` and `key.pem` are the names the Docker CLI and compose read
from `DOCKER_CERT_PATH`, so the directory itself serves `docker --tlsverify`
when a person needs to look inside an instance.

Keys are ECDSA P-256. Ed25519 works too with what swapyard runs (tried: dockerd
20.10 with `--tlsverify`, the Docker CLI and compose, Python's `ssl` on OpenSSL
3.0), but P-256 is the one every TLS stack on the way takes, including older
ones (Ed25519 in TLS needs OpenSSL 1.1.1 and Go 1.13) and anything a user may
put in front of an engine.

Validity: the CA 10 years; an instance's server certificate 5 years (an instance
is replaced by every push, and its engine only reads the certificate at start, so
it must not expire under a quiet instance; one that outlives it is replaced);
the client certificate 1 year, reissued here when less than 30 days remain, or
when it no longer matches the CA. Every certificate starts an hour in the past,
for clocks that lag.

Creating is idempotent and safe under several processes: everything happens
under an exclusive `flock` on `.lock` in the directory, each file is written to a
temporary name, synced and renamed, and `ca.pem` is written last, so a directory
holding `ca-key.pem` without `ca.pem` is a creation that died before anything was
issued, and is started again. Anything else that does not load (a missing or
unparsable file, a key that does not match, a key readable by others) is a
`ProviderError` naming the file and saying what to do.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import re
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.providers.types import ProviderError

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CLIENT_CERT = "cert.pem"
CLIENT_KEY = "key.pem"
LOCK = ".lock"

ORGANIZATION = "swapyard"
CLIENT_NAME = "swapyard control plane"
CA_DAYS = 3650
SERVER_DAYS = 5 * 365
CLIENT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)
BACKDATE = datetime.timedelta(hours=1)
MAX_PEM_BYTES = 64 * 1024  # a PEM certificate or key is about 1 KiB
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ServerCertificate:
    """What an instance's engine needs: PEM bytes of the CA, its certificate and its key."""

    ca: bytes
    certificate: bytes
    key: bytes


@dataclass(frozen=True)
class ClientCredentials:
    """Files for a TLS client of the instances' engines (the docker SDK's `TLSConfig`)."""

    ca: Path
    certificate: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public(key: object) -> bytes:
    """A public key's SubjectPublicKeyInfo, to compare keys of any type."""
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA keys encipher nothing); a CA also signs certificates."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `path` atomically: a temporary file with `mode`, synced, then renamed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CertificateAuthority:
    """The CA kept in `directory`; created on first use, loaded (and checked) after that.

    Constructing it touches nothing; the first call that needs the CA creates or
    loads it.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self._cert: x509.Certificate | None = None
        self._key: ec.EllipticCurvePrivateKey | None = None

    # -- files -------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.directory / name

    def _damaged(self, name: str, problem: str) -> ProviderError:
        return ProviderError(
            f"{self._path(name)}: {problem}; swapyard's CA in {self.directory} is damaged. "
            f"Restore the directory from a backup; moving it aside creates a new CA, and every "
            f"instance made with the old one is then unreachable until it is replaced"
        )

    def _read(self, name: str, secret: bool) -> bytes:
        path = self._path(name)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise self._damaged(name, "missing") from None
        if not stat.S_ISREG(info.st_mode):
            raise self._damaged(name, "not a regular file")
        if secret and info.st_mode & 0o077:
            raise ProviderError(
                f"{path}: a private key readable by others (mode {info.st_mode & 0o777:o}); "
                f"run `chmod 600 {path}` if no one else could read it, else treat it as leaked"
            )
        if info.st_size > MAX_PEM_BYTES:
            raise self._damaged(name, f"{info.st_size} bytes, not a PEM file")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._damaged(name, f"unreadable ({exc.strerror or exc})") from None

    def _load_cert(self, name: str) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self._read(name, secret=False))
        except ValueError as exc:
            raise self._damaged(name, f"not a PEM certificate ({exc})") from None

    def _load_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(self._read(name, secret=True), None)
        except (ValueError, TypeError) as exc:
            raise self._damaged(name, f"not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise self._damaged(name, f"a {type(key).__name__}, not an ECDSA key")
        return key

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            os.chmod(self.directory, 0o700)
        fd = os.open(self._path(LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- the CA ------------------------------------------------------------
    def _ensure(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._cert is None or self._key is None:
            try:
                with self._locked():
                    if not self._path(CA_CERT).exists():
                        self._create()
                    self._cert, self._key = self._load_ca()
                    self._ensure_client(self._cert, self._key)
            except OSError as exc:  # the directory is a file, read-only, someone else's, ...
                raise ProviderError(
                    f"{exc.filename or self.directory}: cannot keep swapyard's CA there: "
                    f"{exc.strerror or exc}"
                ) from None
        return self._cert, self._key

    def _create(self) -> None:
        """A new CA (under the lock): the key first, the certificate last, as the commit."""
        key = _new_key()
        now = _now()
        name = _name(f"swapyard CA {secrets.token_hex(4)}")
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(self._path(CA_KEY), _key_pem(key), 0o600)
        _write(self._path(CA_CERT), cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = self._load_cert(CA_CERT)
        key = self._load_key(CA_KEY)
        if _public(cert.public_key()) != _public(key.public_key()):
            raise self._damaged(CA_KEY, f"not the key of {self._path(CA_CERT)}")
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise self._damaged(CA_CERT, "not a CA certificate")
        if cert.not_valid_after_utc <= _now():
            raise ProviderError(
                f"{self._path(CA_CERT)}: swapyard's CA expired on "
                f"{cert.not_valid_after_utc:%Y-%m-%d}; no instance made with it can be reached"
            )
        return cert, key

    def _sign(
        self,
        common_name: str,
        public: ec.EllipticCurvePublicKey,
        days: int,
        usage: x509.ObjectIdentifier,
        names: Sequence[x509.GeneralName] = (),
    ) -> x509.Certificate:
        ca_cert, ca_key = self._cert, self._key
        assert ca_cert is not None and ca_key is not None
        now = _now()
        not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    def _issued_by_me(self, cert: x509.Certificate) -> bool:
        assert self._cert is not None
        try:
            cert.verify_directly_issued_by(self._cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _ensure_client(self, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
        """Issue swapyard's client certificate when missing, ageing, or from another CA."""
        self._cert, self._key = ca_cert, ca_key
        if self._path(CLIENT_CERT).exists() and self._path(CLIENT_KEY).exists():
            cert = self._load_cert(CLIENT_CERT)
            key = self._load_key(CLIENT_KEY)
            fresh = cert.not_valid_after_utc - _now() > RENEW_BEFORE
            if (
                fresh
                and self._issued_by_me(cert)
                and _public(cert.public_key()) == _public(key.public_key())
            ):
                return
        key = _new_key()
        cert = self._sign(
            CLIENT_NAME, key.public_key(), CLIENT_DAYS, ExtendedKeyUsageOID.CLIENT_AUTH
        )
        _write(self._path(CLIENT_KEY), _key_pem(key), 0o600)
        _write(self._path(CLIENT_CERT), cert.public_bytes(serialization.Encoding.PEM), 0o644)

    # -- what callers use --------------------------------------------------
    @property
    def certificate(self) -> bytes:
        """The CA certificate, PEM (what an instance's engine verifies clients against)."""
        cert, _ = self._ensure()
        return cert.public_bytes(serialization.Encoding.PEM)

    def client(self) -> ClientCredentials:
        """The files of swapyard's client certificate, issued or renewed when needed."""
        cert, key = self._ensure()
        if self._load_cert(CLIENT_CERT).not_valid_after_utc - _now() <= RENEW_BEFORE:
            with self._locked():  # another process may have renewed it meanwhile
                self._ensure_client(cert, key)
        return ClientCredentials(
            self._path(CA_CERT), self._path(CLIENT_CERT), self._path(CLIENT_KEY)
        )

    def issue_server(
        self, instance_id: str, addresses: Sequence[str], dns_names: Sequence[str] = ()
    ) -> ServerCertificate:
        """A new key and server certificate for one instance's engine (serverAuth).

        Its subject is `O=swapyard, CN=<instance_id>`; its names are the instance's
        IP `addresses` and `dns_names`, the ones a client dials. Returned as PEM
        bytes to push into the instance; nothing of it is kept here.
        """
        if not INSTANCE_ID.match(instance_id):
            raise ProviderError(
                f"instance id {instance_id!r}: 1 to 64 letters, digits, '_', '.' and '-' "
                f"(it becomes the certificate's common name)"
            )
        names: list[x509.GeneralName] = []
        for address in addresses:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                raise ProviderError(
                    f"certificate for {instance_id}: {address!r} is not an IP address"
                ) from None
        for dns in dns_names:
            if not HOSTNAME.match(dns):
                raise ProviderError(
                    f"certificate for {instance_id}: {dns!r} is not a DNS name "
                    f"(lower-case letters, digits, '-' and '.')"
                )
            names.append(x509.DNSName(dns))
        if not names:
            raise ProviderError(
                f"certificate for {instance_id}: no address and no DNS name to certify"
            )
        self._ensure()
        key = _new_key()
        cert = self._sign(
            instance_id, key.public_key(), SERVER_DAYS, ExtendedKeyUsageOID.SERVER_AUTH, names
        )
        return ServerCertificate(
            ca=self.certificate,
            certificate=cert.public_bytes(serialization.Encoding.PEM),
            key=_key_pem(key),
        )
