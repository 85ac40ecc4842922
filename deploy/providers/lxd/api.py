"""A small client of the LXD REST API (Incus speaks the same one), over a unix socket or HTTPS.

Why not pylxd: swapyard needs few endpoints, a bounded wait on every
background operation, errors that carry LXD's own message and code, and the
same code against Incus. pylxd wraps each resource in a model object, waits
on operations without a deadline by default, hides the error code in a
string, and names its socket and paths after LXD only. Writing the client on
`requests` keeps those choices ours: every call goes through `request`, which
turns LXD's envelope (`sync`, `async` with an operation, `error`) into a value
or an `LxdError`, and `wait` bounds each operation.

Where LXD and Incus differ for this client: the local socket
(`/var/lib/lxd/unix.socket` or `/var/snap/lxd/common/lxd/unix.socket`;
`/var/lib/incus/unix.socket`) and the header prefix of the file API
(`X-LXD-*`; Incus accepts `X-Incus-*` and, for now, `X-LXD-*`). The API
paths (`/1.0/...`), the envelope and operations are the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from deploy.providers.types import ProviderError

# Where a local daemon listens, in the order they are tried.
SOCKETS = (
    "/var/lib/lxd/unix.socket",
    "/var/snap/lxd/common/lxd/unix.socket",
    "/var/lib/incus/unix.socket",
)
UNIX_BASE = "http://lxd"  # the host part is ignored on a unix socket
DEFAULT_TIMEOUT = 30.0  # seconds for one HTTP exchange
OPERATION_TIMEOUT = 300.0  # seconds a background operation may take by default


class LxdError(ProviderError):
    """LXD answered with an error (or could not be reached); `code` is its HTTP status or 0."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code


class LxdNotFound(LxdError, LookupError):
    """The object asked for does not exist (LXD's 404)."""


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        """Connect to the daemon's unix socket instead of a TCP address."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)  # type: ignore[arg-type]
        sock.connect(self.socket_path)
        self.sock = sock


class _UnixPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path
        self.socket_timeout = timeout

    def _new_conn(self) -> _UnixConnection:
        return _UnixConnection(self.socket_path, self.socket_timeout)


class _UnixAdapter(HTTPAdapter):
    def __init__(self, path: str, timeout: float):
        super().__init__()
        self._pool = _UnixPool(path, timeout)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):  # type: ignore[no-untyped-def]
        """Every request goes to the one pool on the socket (no TLS on a unix socket)."""
        return self._pool

    def close(self) -> None:
        """Close the socket's pool and the adapter."""
        self._pool.close()
        super().close()


@dataclass(frozen=True)
class Endpoint:
    """Where the daemon is: a unix socket path, or an HTTPS URL with a client certificate.

    For HTTPS, `server_cert` pins the daemon's certificate (its PEM file);
    LXD's certificates are self-signed, so there is no CA to verify against.
    """

    socket: str | None = None
    url: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_cert: str | None = None

    @classmethod
    def local(cls, path: str | None = None) -> Endpoint:
        """The given socket, or the first of `SOCKETS` that exists (LXD, snap LXD, Incus)."""
        if path:
            return cls(socket=path)
        for candidate in SOCKETS:
            if os.path.exists(candidate):
                return cls(socket=candidate)
        raise LxdError(
            "no LXD or Incus socket found (tried " + ", ".join(SOCKETS) + "); is the daemon "
            "running? Start it with `lxd --group root` (or `incusd`), or set "
            "SWAPYARD_LXD_SOCKET / SWAPYARD_LXD_URL"
        )

    def describe(self) -> str:
        """The endpoint for messages."""
        return self.url or f"unix:{self.socket}"


class LxdClient:
    """Calls to one daemon, scoped to one LXD project (`default` unless given)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        project: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.endpoint = endpoint
        self.project = project
        self.timeout = timeout
        self.session = requests.Session()
        # the daemon is dialled directly and verified against its pinned certificate only:
        # REQUESTS_CA_BUNDLE or a proxy from the environment must not step in
        self.session.trust_env = False
        if endpoint.socket:
            self.base = UNIX_BASE
            self.session.mount(UNIX_BASE, _UnixAdapter(endpoint.socket, timeout))
        elif endpoint.url:
            if not endpoint.url.startswith("https://"):
                raise LxdError(f"LXD's remote API is HTTPS only, not {endpoint.url!r}")
            if not (endpoint.client_cert and endpoint.client_key):
                raise LxdError(
                    f"{endpoint.url}: a remote daemon needs a client certificate and key"
                )
            self.base = endpoint.url.rstrip("/")
            self.session.cert = (endpoint.client_cert, endpoint.client_key)
            self.session.verify = endpoint.server_cert or True
        else:
            raise LxdError("an LXD endpoint needs a socket path or an https URL")

    def in_project(self, project: str) -> LxdClient:
        """A client of the same daemon scoped to another LXD project (shares the connection)."""
        other = object.__new__(LxdClient)
        other.__dict__.update(self.__dict__)
        other.project = project
        return other

    def close(self) -> None:
        """Close the connections."""
        self.session.close()

    # -- the one door ------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | Iterable[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        project: bool = True,
        raw: bool = False,
        wait: float | None = OPERATION_TIMEOUT,
    ) -> Any:
        """Call the API; return the `metadata` of a sync answer, or of the finished operation.

        `wait=None` returns an async answer's operation without waiting for it.
        With `raw` the response itself is returned (file downloads, logs).
        Errors, including a failed operation, raise `LxdError` (`LxdNotFound` for 404).
        """
        query = dict(params or {})
        if project and self.project != "default":
            query.setdefault("project", self.project)
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            response = self.session.request(
                method,
                url,
                data=json.dumps(body) if body is not None else data,
                headers=dict(headers or {}),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise LxdError(f"LXD at {self.endpoint.describe()} unreachable: {exc}") from None
        if raw:
            if response.status_code >= 400:
                raise self._error(method, path, response)
            return response
        if response.status_code >= 400:
            raise self._error(method, path, response)
        envelope = _json(response, method, path)
        if envelope.get("type") == "async":
            if wait is None:
                return envelope.get("operation")
            return self.wait(envelope["operation"], wait, what=f"{method} {path}")
        return envelope.get("metadata")

    def _error(self, method: str, path: str, response: requests.Response) -> LxdError:
        try:
            message = response.json().get("error") or response.reason
        except ValueError:
            message = response.text[:200] or response.reason
        text = f"LXD refused {method} {path}: {message}"
        if response.status_code == 404:
            return LxdNotFound(text, 404)
        return LxdError(text, response.status_code)

    def wait(self, operation: str, timeout: float, *, what: str = "") -> Any:
        """Wait for a background operation; return its metadata, raise when it failed.

        Waits in slices of at most 30 s, so a server-side wait never outlives
        the HTTP timeout, and gives up after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LxdError(f"{what or operation}: not finished after {timeout:g} s")
            piece = max(1, min(int(left), int(self.timeout) - 2, 30))
            op = self.request("GET", f"{operation}/wait", params={"timeout": str(piece)})
            status = op.get("status")
            if status == "Success":
                return op.get("metadata") or {}
            if status in ("Failure", "Cancelled"):
                raise LxdError(f"{what or operation} failed: {op.get('err') or status}")

    # -- small helpers -----------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> Any:
        """GET `path` and return its metadata."""
        return self.request("GET", path, **kwargs)

    def exists(self, path: str) -> bool:
        """Whether GET `path` finds something."""
        try:
            self.request("GET", path)
        except LxdNotFound:
            return False
        return True

    def server(self) -> dict[str, Any]:
        """`GET /1.0`: the server's environment and API extensions."""
        return self.request("GET", "/1.0", project=False)

    def has_extension(self, name: str) -> bool:
        """Whether the server announces the API extension `name`."""
        return name in (self.server().get("api_extensions") or [])

    # -- files inside an instance -------------------------------------------
    def push_file(
        self,
        instance: str,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
    ) -> None:
        """Write a file inside the instance (running or stopped); parents must exist."""
        self.request(
            "POST",
            f"/1.0/instances/{instance}/files",
            params={"path": path},
            data=data,
            headers={
                "Content-Type": "application/octet-stream",
                "X-LXD-type": "file",
                "X-LXD-mode": f"{mode:04o}",
                "X-LXD-uid": str(uid),
                "X-LXD-gid": str(gid),
                "X-LXD-write": "overwrite",
            },
        )

    def make_directory(self, instance: str, path: str, *, mode: int = 0o755) -> None:
        """Create a directory inside the instance (its parent must exist); existing is fine."""
        try:
            self.request(
                "POST",
                f"/1.0/instances/{instance}/files",
                params={"path": path},
                data=b"",
                headers={"X-LXD-type": "directory", "X-LXD-mode": f"{mode:04o}"},
            )
        except LxdError as exc:
            if "exists" not in str(exc).lower():
                raise

    def read_file(self, instance: str, path: str) -> bytes:
        """The bytes of a file inside the instance; `LxdNotFound` when it is not there."""
        response = self.request(
            "GET", f"/1.0/instances/{instance}/files", params={"path": path}, raw=True
        )
        return response.content

    def delete_file(self, instance: str, path: str) -> None:
        """Delete a file inside the instance; a missing file is fine."""
        with contextlib.suppress(LxdNotFound):
            self.request("DELETE", f"/1.0/instances/{instance}/files", params={"path": path})

    # -- commands (tests and diagnostics read the inside this way; never a login) ----
    def execute(
        self, instance: str, argv: list[str], *, timeout: float = 120.0
    ) -> tuple[int, str, str]:
        """Run `argv` in the instance, recorded, without a terminal; (exit code, stdout, stderr)."""
        try:
            meta = self._exec(instance, argv, timeout)
        except LxdError as exc:
            if "command not found" in str(exc).lower():  # LXD turns exit code 127 into this
                return 127, "", f"{argv[0]}: command not found"
            raise
        inner = meta.get("metadata") or meta
        code = int(inner.get("return", -1))
        output = inner.get("output") or {}
        return code, self._log(output.get("1")), self._log(output.get("2"))

    def _exec(self, instance: str, argv: list[str], timeout: float) -> Any:
        return self.request(
            "POST",
            f"/1.0/instances/{instance}/exec",
            body={
                "command": argv,
                "wait-for-websocket": False,
                "interactive": False,
                "record-output": True,
                "environment": {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            },
            wait=timeout,
        )

    def _log(self, path: str | None) -> str:
        if not path:
            return ""
        response = self.request("GET", urllib.parse.urlsplit(path).path, raw=True)
        return response.content.decode(errors="replace")


def _json(response: requests.Response, method: str, path: str) -> dict[str, Any]:
    try:
        envelope = response.json()
    except ValueError:
        raise LxdError(
            f"LXD answered {method} {path} with no JSON: {response.text[:200]!r}"
        ) from None
    if not isinstance(envelope, dict):
        raise LxdError(
            f"LXD answered {method} {path} with {type(envelope).__name__}, not an object"
        )
    if envelope.get("type") == "error":
        raise LxdError(
            f"LXD refused {method} {path}: {envelope.get('error')}", envelope.get("error_code", 0)
        )
    return envelope


def read_pem(path: str | Path) -> str:
    """The path of a PEM file, checked to exist (for messages that name it)."""
    p = Path(path)
    if not p.is_file():
        raise LxdError(f"{p}: no such certificate or key file")
    return str(p)
