"""The LXD REST client against the real daemon: the unix socket, HTTPS with a client certificate,
and how errors and operations come back."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy.providers.lxd.api import Endpoint, LxdClient, LxdError, LxdNotFound

pytestmark = pytest.mark.lxd


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A client certificate and key (what `lxc remote add` makes), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def https_daemon(lxd_client: LxdClient, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The daemon also listening on HTTPS on loopback, trusting one client certificate.

    The listener is the daemon's own setting: test runs sharing the daemon take turns
    (a lock file beside every run's), so one never turns it off under another.
    """
    with open(Path(tempfile.gettempdir()) / "swapyard-lxd-https-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _https_daemon(lxd_client, tmp_path)


def _https_daemon(lxd_client: LxdClient, tmp_path: Path) -> Iterator[dict[str, Any]]:
    before = lxd_client.server()["config"].get("core.https_address", "")
    address = before or f"127.0.0.1:{free_port()}"
    if not before:
        lxd_client.request(
            "PATCH", "/1.0", body={"config": {"core.https_address": address}}, project=False
        )
    cert, key = self_signed(tmp_path, "swapyard-test")
    pem = cert.read_text()
    body = "".join(line for line in pem.splitlines() if "CERTIFICATE" not in line)
    lxd_client.request(
        "POST",
        "/1.0/certificates",
        body={"type": "client", "certificate": body, "name": "swapyard-test"},
        project=False,
    )
    server_cert = tmp_path / "server.crt"
    server_cert.write_text(lxd_client.server()["environment"]["certificate"])
    fingerprint = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()
    try:
        yield {
            "url": f"https://{address}",
            "cert": str(cert),
            "key": str(key),
            "server_cert": str(server_cert),
        }
    finally:
        with contextlib.suppress(LxdError):
            lxd_client.request("DELETE", f"/1.0/certificates/{fingerprint}", project=False)
        if not before:
            lxd_client.request(
                "PATCH", "/1.0", body={"config": {"core.https_address": ""}}, project=False
            )


def test_the_local_socket_is_found_and_answers(lxd_client: LxdClient) -> None:
    server = lxd_client.server()
    assert server["auth"] == "trusted"
    assert lxd_client.has_extension("projects") and not lxd_client.has_extension("no-such-ext")


def test_a_missing_object_is_lxd_not_found_with_lxd_s_message(lxd_client: LxdClient) -> None:
    with pytest.raises(LxdNotFound, match="Instance not found") as caught:
        lxd_client.get("/1.0/instances/sy-no-such-instance")
    assert caught.value.code == 404


def test_a_refused_request_carries_lxd_s_message(lxd_client: LxdClient) -> None:
    with pytest.raises(LxdError, match=r"LXD refused POST /1\.0/instances") as caught:
        lxd_client.request("POST", "/1.0/instances", body={"name": "bad name!", "source": {}})
    assert caught.value.code == 400


def test_a_failed_operation_is_an_error_naming_it(lxd_client: LxdClient) -> None:
    with pytest.raises(LxdError, match=r"failed|refused"):
        lxd_client.request(
            "POST",
            "/1.0/instances",
            body={"name": "sy-api-test", "source": {"type": "image", "alias": "no-such-alias"}},
        )
    assert not lxd_client.exists("/1.0/instances/sy-api-test")


def test_no_socket_says_how_to_start_the_daemon(tmp_path: Path) -> None:
    client = LxdClient(Endpoint.local(str(tmp_path / "nothing.socket")))
    with pytest.raises(LxdError, match="unreachable"):
        client.server()


def test_https_with_a_trusted_client_certificate(https_daemon: dict[str, Any]) -> None:
    client = LxdClient(
        Endpoint(
            url=https_daemon["url"],
            client_cert=https_daemon["cert"],
            client_key=https_daemon["key"],
            server_cert=https_daemon["server_cert"],
        )
    )
    assert client.server()["auth"] == "trusted"
    assert isinstance(client.get("/1.0/instances"), list)


def test_https_with_an_unknown_certificate_is_not_trusted(
    https_daemon: dict[str, Any], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "stranger")
    client = LxdClient(
        Endpoint(
            url=https_daemon["url"],
            client_cert=str(cert),
            client_key=str(key),
            server_cert=https_daemon["server_cert"],
        )
    )
    assert client.server()["auth"] == "untrusted"
    with pytest.raises(LxdError) as caught:
        client.get("/1.0/instances")
    assert caught.value.code == 403


def test_https_pins_the_daemon_s_certificate(https_daemon: dict[str, Any], tmp_path: Path) -> None:
    other, _ = self_signed(tmp_path, "impostor")
    client = LxdClient(
        Endpoint(
            url=https_daemon["url"],
            client_cert=https_daemon["cert"],
            client_key=https_daemon["key"],
            server_cert=str(other),
        )
    )
    with pytest.raises(LxdError, match="unreachable"):
        client.server()


def test_https_needs_a_client_certificate() -> None:
    with pytest.raises(LxdError, match="client certificate"):
        LxdClient(Endpoint(url="https://127.0.0.1:8443"))
    with pytest.raises(LxdError, match="HTTPS only"):
        LxdClient(Endpoint(url="http://127.0.0.1:8443", client_cert="c", client_key="k"))
