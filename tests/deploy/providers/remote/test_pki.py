"""swapyard's CA on disk: created once, safe under several processes, refusing a damaged copy."""

from __future__ import annotations

import datetime
import ipaddress
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.providers.remote.pki import (
    CA_CERT,
    CA_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
    CertificateAuthority,
)
from deploy.providers.types import ProviderError


def _cert(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def _days(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400


def test_created_on_first_use_with_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ca = CertificateAuthority(directory)
    assert not directory.exists()  # constructing touches nothing
    ca_pem = ca.certificate
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in (CA_KEY, CLIENT_KEY):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    cert = _cert(ca_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "swapyard"
    assert 3649 <= _days(cert) <= 3651
    # a second object (a restarted service) loads the same CA and client certificate
    again = CertificateAuthority(directory)
    assert again.certificate == ca_pem
    assert again.client().certificate.read_bytes() == (directory / CLIENT_CERT).read_bytes()


def test_server_certificate_names_the_instance_and_its_addresses(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    issued = ca.issue_server("sy-prod-blog-ab12", ["10.0.0.7", "fd00::7"], ["blog.internal"])
    cert = _cert(issued.certificate)
    assert issued.ca == ca.certificate
    cert.verify_directly_issued_by(_cert(ca.certificate))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("fd00::7"),
    ]
    assert names.get_values_for_type(x509.DNSName) == ["blog.internal"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sy-prod-blog-ab12"
    assert 5 * 365 - 1 <= _days(cert) <= 5 * 365 + 1
    key = serialization.load_pem_private_key(issued.key, None)
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # each instance its own key
    other = ca.issue_server("sy-prod-blog-cd34", ["10.0.0.8"])
    assert other.key != issued.key


def test_client_certificate_is_for_client_auth(tmp_path: Path) -> None:
    creds = CertificateAuthority(tmp_path / "pki").client()
    cert = _cert(creds.certificate.read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert creds.ca.name == "ca.pem" and creds.key.name == "key.pem"  # DOCKER_CERT_PATH names


@pytest.mark.parametrize(
    ("instance_id", "addresses", "dns", "expected"),
    [
        ("i", ["10.0.0.300"], [], "'10.0.0.300' is not an IP address"),
        ("i", [], ["bad_name"], "'bad_name' is not a DNS name"),
        ("i", [], [], "no address and no DNS name"),
        ("", ["10.0.0.1"], [], "instance id ''"),
        ("x" * 65, ["10.0.0.1"], [], "1 to 64 letters"),
        ("a b", ["10.0.0.1"], [], "instance id 'a b'"),
    ],
)
def test_bad_requests_are_refused(
    tmp_path: Path, instance_id: str, addresses: list[str], dns: list[str], expected: str
) -> None:
    with pytest.raises(ProviderError, match=expected):
        CertificateAuthority(tmp_path / "pki").issue_server(instance_id, addresses, dns)


def _create(directory: str) -> bytes:
    return CertificateAuthority(directory).certificate


def test_processes_creating_it_at_once_get_one_ca(tmp_path: Path) -> None:
    directory = str(tmp_path / "pki")
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.map(_create, [directory] * 12)
    assert len(set(results)) == 1
    assert CertificateAuthority(directory).certificate == results[0]
    left = sorted(p.name for p in Path(directory).iterdir())
    assert left == sorted([".lock", CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY])  # no temp files


def test_a_creation_that_died_before_the_certificate_starts_again(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    CertificateAuthority(directory).certificate  # noqa: B018
    (directory / CA_CERT).unlink()  # as if killed between writing the key and the certificate
    old_key = (directory / CA_KEY).read_bytes()
    ca = CertificateAuthority(directory)
    ca.issue_server("i", ["10.0.0.1"])
    assert (directory / CA_KEY).read_bytes() != old_key
    # the client certificate of the lost CA was replaced too
    _cert((directory / CLIENT_CERT).read_bytes()).verify_directly_issued_by(_cert(ca.certificate))


def test_an_ageing_or_foreign_client_certificate_is_reissued(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ca = CertificateAuthority(directory)
    ca.client()
    cert, key = ca._ensure()
    short = ca._sign(
        "swapyard control plane", key.public_key(), 10, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    (directory / CLIENT_CERT).write_bytes(short.public_bytes(serialization.Encoding.PEM))
    (directory / CLIENT_KEY).write_bytes((directory / CA_KEY).read_bytes())
    renewed = _cert(CertificateAuthority(directory).client().certificate.read_bytes())
    assert renewed.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(
        days=300
    )
    foreign = CertificateAuthority(tmp_path / "other").client()
    (directory / CLIENT_CERT).write_bytes(foreign.certificate.read_bytes())
    (directory / CLIENT_KEY).write_bytes(foreign.key.read_bytes())
    mine = _cert(CertificateAuthority(directory).client().certificate.read_bytes())
    mine.verify_directly_issued_by(cert)


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a certificate\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _missing(path: Path) -> None:
    path.unlink()


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _huge(path: Path) -> None:
    with open(path, "ab") as f:
        f.truncate(10 << 20)


def _world_readable(path: Path) -> None:
    os.chmod(path, 0o644)


def _other_key(path: Path) -> None:
    other = CertificateAuthority(path.parent.parent / "other")
    other.certificate  # noqa: B018
    data = (other.directory / CA_KEY).read_bytes()
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _symlink(path: Path) -> None:
    target = path.with_name("elsewhere")
    path.rename(target)
    path.symlink_to(target)


DAMAGE = {
    (CA_CERT, "garbage"): (_garbage, "not a PEM certificate"),
    (CA_CERT, "empty"): (_empty, "not a PEM certificate"),
    (CA_CERT, "truncated"): (_truncated, "not a PEM certificate"),
    (CA_CERT, "directory"): (_directory, "not a regular file"),
    (CA_CERT, "huge"): (_huge, "not a PEM file"),
    (CA_CERT, "symlink"): (_symlink, "not a regular file"),
    (CA_KEY, "missing"): (_missing, "missing"),
    (CA_KEY, "garbage"): (_garbage, "not an unencrypted PEM private key"),
    (CA_KEY, "world-readable"): (_world_readable, "readable by others"),
    (CA_KEY, "another CA's"): (_other_key, "not the key of"),
    (CLIENT_CERT, "garbage"): (_garbage, "not a PEM certificate"),
    (CLIENT_KEY, "world-readable"): (_world_readable, "readable by others"),
}


@pytest.mark.parametrize(("name", "damage"), sorted(DAMAGE), ids=lambda v: str(v))
def test_a_damaged_directory_is_refused_naming_the_file(
    tmp_path: Path, name: str, damage: str
) -> None:
    directory = tmp_path / "pki"
    CertificateAuthority(directory).client()
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    spoil, expected = DAMAGE[(name, damage)]
    spoil(directory / name)
    with pytest.raises(ProviderError) as caught:
        CertificateAuthority(directory).issue_server("i", ["10.0.0.1"])
    message = str(caught.value)
    assert str(directory / name) in message and expected in message
    # nothing else was rewritten
    for other, data in before.items():
        if other != name and (directory / other).is_file():
            assert (directory / other).read_bytes() == data


def test_a_directory_that_cannot_hold_it_is_refused_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(ProviderError, match=f"{blocker}.*cannot keep swapyard's CA there"):
        CertificateAuthority(blocker / "pki").client()
