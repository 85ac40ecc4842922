"""One remote instance's Docker Engine API over mutual TLS, and the compose project on it.

An instance runs its own engine on `tcp://<ip>:<port>` with `--tlsverify`: only a
client certificate from swapyard's CA gets in (`deploy.providers.remote.pki`),
and swapyard checks the engine's certificate against the same CA and the IP it
dialled. Through it, without any login, swapyard copies images when the
instance is offline, waits for the containers the instance's
`app-prepare.service` creates, starts and stops them, turns maintenance on and
off, and runs one-off jobs (restic for backups).

The instance knows one compose project (label `com.docker.compose.project`).
A **writer** is a container labelled `org.swapyard.writer=true`, or one whose
service depends on a writer (an app waiting for its database stops and starts
with it), as the local provider counts them. Starts follow compose's
`depends_on` order and wait for a dependency that must be healthy; stops go in
the reverse order. Every action is idempotent: starting a running container
or stopping a stopped one does nothing.

Maintenance is a flag file in the Caddy container's `MAINTENANCE_DIR`, and the
health pass one file per token beside it (renderers/layout.py). The rendered
compose file binds that directory into Caddy read-only, so neither
`put_archive` into the Caddy container (the engine answers "mounted volume is
marked read-only") nor `rm` inside it can change it, and the Docker API has no
call that deletes a file. So a short-lived helper container from the Caddy
container's own image (the instance holds it; upstream Caddy is Alpine-based
and the local test images busybox-based, both with `rm`) binds the same host
directory writable: files are created with `put_archive` (no shell, no
quoting) and removed by the helper's `rm -f` with exact paths, read first
from the directory. The helper never starts when there is nothing to remove.

Errors are the provider errors of `deploy.providers.types`, each naming the
instance and the address: `EngineUnreachable` (no answer), `EngineRefused`
(the TLS handshake failed), `EngineTimeout` (an answer, but not in time),
`InstanceNotReady` from the waits, `ProviderError` for what the engine refused.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import io
import re
import secrets
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests
from docker.tls import TLSConfig
from docker.types import Mount

from deploy.providers.remote.pki import ClientCredentials
from deploy.providers.types import (
    EngineRefused,
    EngineTimeout,
    EngineUnreachable,
    InstanceNotReady,
    ProviderError,
)
from renderers.layout import (
    CADDY_SERVICE,
    HEALTH_PASS_PREFIX,
    HEALTH_PASS_TOKEN,
    MAINTENANCE_DIR,
    MAINTENANCE_FLAG,
)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
DEPENDS_LABEL = "com.docker.compose.depends_on"
ONEOFF_LABEL = "com.docker.compose.oneoff"
WRITER_LABEL = "org.swapyard.writer"
JOB_LABEL = "org.swapyard.job"  # helper and one-off containers, never part of the project
API_VERSION = "1.41"  # Docker 20.10 (Debian 12); newer engines still serve it
CHUNK = 1 << 20  # bytes per piece of an image stream
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 64 * 1024
MAX_LISTING_BYTES = 16 << 20  # the maintenance directory: a page, a flag, health passes
POLL = 0.2
# what the control host's own engine may raise while images are copied from it
LOCAL_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


@dataclass(frozen=True)
class Container:
    """One container of the instance's compose project, as last seen."""

    id: str
    name: str
    service: str
    writer: bool  # labelled a writer, or depending on one
    status: str  # Docker's: created, running, restarting, exited, ...
    health: str | None  # healthy, unhealthy, starting, or None without a healthcheck
    depends_on: tuple[str, ...]
    healthy_deps: tuple[str, ...]  # the dependencies that must be healthy first


@dataclass(frozen=True)
class ImageCopy:
    """What `copy_images` did: images copied, already there, and held by neither engine."""

    copied: tuple[str, ...]
    present: tuple[str, ...]
    missing: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class JobMount:
    """A mount of a one-off job: a host path (`bind`) or a named volume (`volume`)."""

    source: str
    target: str
    read_only: bool = False
    kind: str = "bind"


@dataclass(frozen=True)
class JobResult:
    """How a one-off job ended: its exit code and the tail of its output.

    With `stdout_bytes`, `stdout` holds the job's standard output whole and
    `logs` the tail of its standard error only.
    """

    exit_code: int
    logs: str
    stdout: str = ""


def _docker_time(text: str) -> float | None:
    """Unix time of Docker's RFC 3339 timestamp (nanoseconds cut to microseconds), or None."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    zone = "+00:00" if match[3] == "Z" else match[3]
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    stamp = datetime.datetime.fromisoformat(f"{match[1]}.{fraction}{zone}")
    return stamp.timestamp()


def _tail(chunks: Iterable[bytes], limit: int) -> str:
    """The last `limit` bytes of a stream, holding no more than that in memory."""
    kept: collections.deque[bytes] = collections.deque()
    size = 0
    for chunk in chunks:
        kept.append(chunk)
        size += len(chunk)
        while size - len(kept[0]) >= limit:
            size -= len(kept.popleft())
    text = b"".join(kept)[-limit:]
    return text.decode(errors="replace")


def _reason(exc: Exception) -> str:
    """What went wrong, without the request line requests wraps around it."""
    inner = exc.args[0] if exc.args else None
    return str(getattr(inner, "reason", None) or exc)


def _tar(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _save(api: Any, refs: Sequence[str]) -> Iterator[bytes]:
    """`docker save` of several images as one tarball (the engine's `GET /images/get?names=`),
    in chunks. docker-py's `get_image` saves one image; this is the same call with more names.
    """
    if len(refs) == 1:
        yield from api.get_image(refs[0], chunk_size=CHUNK)
        return
    response = api._get(api._url("/images/get"), params={"names": list(refs)}, stream=True)
    api._raise_for_status(response)
    yield from api._stream_raw_result(response, CHUNK, False)


def _ordered(containers: Sequence[Container]) -> list[Container]:
    """Dependencies before their dependents (compose's `depends_on`), then by service name."""
    by_service = {c.service: c for c in containers}
    done: set[str] = set()
    out: list[Container] = []

    def visit(c: Container, path: tuple[str, ...]) -> None:
        """Put `c` after what it depends on (depth first)."""
        if c.service in done or c.service in path:  # a cycle compose would refuse; stop
            return
        for dep in sorted(c.depends_on):
            if dep in by_service:
                visit(by_service[dep], (*path, c.service))
        done.add(c.service)
        out.append(c)

    for c in sorted(containers, key=lambda c: c.service):
        visit(c, ())
    return out


class RemoteEngine:
    """The Docker engine of instance `instance` at `host:port`, and its compose `project`.

    `credentials` is swapyard's client certificate (`CertificateAuthority.client()`);
    the engine's certificate must be issued by the same CA for `host`. Nothing is
    opened before the first call. `timeout` bounds each API call (a container stop
    gets its stop timeout on top).
    """

    def __init__(
        self,
        instance: str,
        host: str,
        port: int,
        credentials: ClientCredentials,
        project: str,
        *,
        timeout: float = 60,
        settle: float = 1.0,
    ):
        self.instance = instance
        self.host = host
        self.port = port
        self.credentials = credentials
        self.project = project
        self.timeout = timeout
        self.settle = settle  # seconds a started container is watched for an early exit
        self._client: Any = None

    # -- plumbing ----------------------------------------------------------
    @property
    def url(self) -> str:
        """The engine's address, as dialled."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def _where(self) -> str:
        return f"instance {self.instance} ({self.url})"

    def _new_client(self, timeout: float) -> Any:
        tls = TLSConfig(
            client_cert=(str(self.credentials.certificate), str(self.credentials.key)),
            ca_cert=str(self.credentials.ca),
            verify=True,
        )
        with self._api("opening the client"):
            client = docker.DockerClient(
                base_url=self.url, tls=tls, version=API_VERSION, timeout=timeout
            )
        # requests would let REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace the CA to verify
        # against, and route through HTTPS_PROXY: the engine is dialled directly, against
        # swapyard's CA only.
        client.api.trust_env = False
        return client

    @property
    def client(self) -> Any:
        """The docker SDK client of this engine (made on first use)."""
        if self._client is None:
            self._client = self._new_client(self.timeout)
        return self._client

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Turn what the docker SDK and requests raise into provider errors naming the engine."""
        try:
            yield
        except requests.exceptions.SSLError as exc:
            raise EngineRefused(
                f"{self._where()}: the TLS handshake failed while {what}: {_reason(exc)}; "
                f"the engine must present a certificate from swapyard's CA for {self.host} "
                f"and accept swapyard's client certificate"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise EngineUnreachable(
                f"{self._where()}: no connection while {what} (timed out)"
            ) from None
        except requests.exceptions.Timeout:
            raise EngineTimeout(f"{self._where()}: no answer in time while {what}") from None
        except requests.exceptions.ConnectionError as exc:
            raise EngineUnreachable(
                f"{self._where()}: unreachable while {what}: {_reason(exc)}"
            ) from None
        except docker.errors.APIError as exc:
            raise ProviderError(
                f"{self._where()}: the engine refused {what}: {exc.explanation or exc}"
            ) from None
        except docker.errors.DockerException as exc:
            raise ProviderError(f"{self._where()}: {what} failed: {exc}") from None

    # -- reachability ------------------------------------------------------
    def wait_until_reachable(self, timeout: float) -> None:
        """Wait until the engine answers `ping` over mutual TLS.

        `EngineRefused` at once when the handshake fails (it will not get better);
        `InstanceNotReady` when nothing answered in `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            left = deadline - time.monotonic()
            probe = self._new_client(max(0.5, min(5.0, left)))
            try:
                with self._api("pinging it"):
                    probe.ping()
                return
            except (EngineUnreachable, EngineTimeout) as exc:
                last = str(exc)
            finally:
                probe.close()
            if time.monotonic() + POLL >= deadline:
                raise InstanceNotReady(
                    f"{self._where()}: the Docker engine did not answer in {timeout:g} s: {last}"
                )
            time.sleep(POLL)

    # -- images ------------------------------------------------------------
    def _image_id(self, ref: str) -> str | None:
        """The id of image `ref` on this engine, or None when it has none."""
        with self._api(f"inspecting image {ref}"):
            try:
                return str(self.client.api.inspect_image(ref)["Id"])
            except docker.errors.ImageNotFound:
                return None

    def copy_images(
        self, local_client: Any, images: Iterable[str], *, missing_ok: bool = False
    ) -> ImageCopy:
        """Copy each image this engine lacks (or holds in another version) from `local_client`.

        The control host's `docker save` is streamed into the instance's
        `docker load` a chunk at a time, never held whole: one save of every
        image to copy, so a layer they share (the local images share their
        Debian root) crosses once, not once per image. An image neither
        engine holds is a `ProviderError` naming them all, after the others were
        copied, unless `missing_ok`, when they are listed in the result.
        """
        copied: list[str] = []
        present: list[str] = []
        missing: list[str] = []
        total = 0
        for ref in dict.fromkeys(images):
            remote_id = self._image_id(ref)
            try:
                local_id = local_client.api.inspect_image(ref)["Id"]
            except docker.errors.ImageNotFound:
                local_id = None
            except LOCAL_ERRORS as exc:
                raise ProviderError(f"the control host's engine: inspecting {ref}: {exc}") from None
            if local_id is None:
                (present if remote_id else missing).append(ref)
                continue
            if remote_id == local_id:
                present.append(ref)
                continue
            copied.append(ref)
        if copied:
            total = self._stream_images(local_client, copied)
        if missing and not missing_ok:
            raise ProviderError(
                f"{self._where()}: neither the control host's engine nor the instance holds "
                f"{', '.join(missing)}; build or pull them on the control host "
                f"(`swapyard images build-local`), or let the instance pull them online"
            )
        return ImageCopy(tuple(copied), tuple(present), tuple(missing), total)

    def ensure_image(self, local_client: Any, ref: str) -> None:
        """Image `ref` on this engine: copied from `local_client` (None: no local engine)
        when that holds it, else pulled by the instance."""
        if local_client is not None:
            self.copy_images(local_client, [ref], missing_ok=True)
        if self._image_id(ref) is None:
            with self._api(f"pulling image {ref}"):
                self.client.images.pull(ref)

    def _stream_images(self, local_client: Any, refs: Sequence[str]) -> int:
        """Stream one `docker save` of `refs` into this engine's `docker load`; bytes sent."""
        sent = 0
        names = ", ".join(refs)

        def counted() -> Iterator[bytes]:
            """The saved images' bytes, counted as they pass."""
            nonlocal sent
            try:
                for chunk in _save(local_client.api, refs):
                    sent += len(chunk)
                    yield chunk
            except LOCAL_ERRORS as exc:  # not the instance's: say whose
                raise ProviderError(f"the control host's engine: saving {names}: {exc}") from None

        with self._api(f"loading image {names}"):
            for line in self.client.api.load_image(counted()):
                error = line.get("error") or (line.get("errorDetail") or {}).get("message")
                if error:
                    raise ProviderError(f"{self._where()}: loading image {names}: {error}")
        for ref in refs:
            if self._image_id(ref) is None:
                hint = (
                    " (`docker load` keeps no registry digest: refer to the image by a tag)"
                    if "@" in ref
                    else ""
                )
                raise ProviderError(
                    f"{self._where()}: image {ref} is not there after loading it{hint}"
                )
        return sent

    # -- the compose project -----------------------------------------------
    def _raw_containers(self) -> list[Any]:
        with self._api(f"listing the containers of project {self.project}"):
            return list(
                self.client.containers.list(
                    all=True,
                    ignore_removed=True,
                    filters={"label": f"{PROJECT_LABEL}={self.project}"},
                )
            )

    def containers(self, writers: bool | None = None) -> list[Container]:
        """The project's containers: all (`None`), only writers (`True`) or none of them."""
        found = []
        for c in self._raw_containers():
            labels = c.labels or {}
            if labels.get(ONEOFF_LABEL, "False") == "True":  # `docker compose run`
                continue
            deps, healthy = [], []
            for entry in (labels.get(DEPENDS_LABEL) or "").split(","):
                parts = entry.strip().split(":")
                if parts[0]:
                    deps.append(parts[0])
                    if len(parts) > 1 and parts[1] == "service_healthy":
                        healthy.append(parts[0])
            state = c.attrs.get("State") or {}
            found.append(
                Container(
                    id=c.id,
                    name=c.name,
                    service=labels.get(SERVICE_LABEL, ""),
                    writer=labels.get(WRITER_LABEL, "false").lower() == "true",
                    status=c.status,
                    health=(state.get("Health") or {}).get("Status"),
                    depends_on=tuple(sorted(deps)),
                    healthy_deps=tuple(sorted(healthy)),
                )
            )
        writer_services = {c.service for c in found if c.writer}
        grown = True
        while grown:  # dependents of writers are writers too
            more = {c.service for c in found if set(c.depends_on) & writer_services}
            grown = bool(more - writer_services)
            writer_services |= more
        found = [dataclasses.replace(c, writer=c.service in writer_services) for c in found]
        found.sort(key=lambda c: (c.service, c.name))
        if writers is None:
            return found
        return [c for c in found if c.writer == writers]

    def wait_for_project(self, services: Iterable[str], timeout: float) -> list[Container]:
        """Wait until every service in `services` has a container in the project.

        That is, until the instance's `app-prepare.service` created them;
        `InstanceNotReady` naming the missing services after `timeout` seconds.
        """
        wanted = set(services)
        deadline = time.monotonic() + timeout
        while True:
            found = self.containers()
            missing = wanted - {c.service for c in found}
            if not missing:
                return found
            if time.monotonic() + POLL >= deadline:
                raise InstanceNotReady(
                    f"{self._where()}: project {self.project} has no container for "
                    f"{', '.join(sorted(missing))} after {timeout:g} s"
                )
            time.sleep(POLL)

    def _container(self, c: Container) -> Any:
        with self._api(f"inspecting container {c.name}"):
            return self.client.containers.get(c.id)

    def _log_tail(self, raw: Any) -> str:
        with self._api(f"reading the log of {raw.name}"):
            stream = raw.logs(tail=LOG_TAIL_LINES, stream=True, follow=False)
            return _tail(stream, LOG_TAIL_BYTES).strip()

    def _wait_healthy(self, service: str, deadline: float) -> None:
        while True:
            c = next((c for c in self.containers() if c.service == service), None)
            if c is not None and c.health == "healthy":
                return
            if c is not None and c.health is None and c.status == "running":
                return  # no healthcheck to wait for: running is all it can be
            if c is not None and c.status in ("exited", "dead"):
                raise ProviderError(
                    f"{self._where()}: service {service} of {self.project} {c.status} before "
                    f"it was healthy: {self._log_tail(self._container(c)) or 'no output'}"
                )
            if time.monotonic() >= deadline:
                state = c.health if c is not None else "not created"
                raise EngineTimeout(
                    f"{self._where()}: service {service} of {self.project} is not healthy "
                    f"({state}); its dependents were not started"
                )
            time.sleep(POLL)

    def start(self, writers: bool = False, timeout: float = 120) -> None:
        """Start the project's non-writers, and its writers too when `writers` is true.

        In dependency order; a dependency that must be healthy is waited for (up to
        `timeout` s in all). A container that stops or restarts within `settle`
        seconds of its start is a `ProviderError` carrying the tail of its log.
        """
        deadline = time.monotonic() + timeout
        chosen = [c for c in self.containers() if writers or not c.writer]
        started = []
        for c in _ordered(chosen):
            for dep in c.healthy_deps:
                self._wait_healthy(dep, deadline)
            if c.status == "running":
                continue
            raw = self._container(c)
            before = int(raw.attrs.get("RestartCount") or 0)
            with self._api(f"starting container {c.name}"):
                raw.start()
            started.append((c, before))
        if not started:
            return
        end = time.monotonic() + self.settle
        while True:
            for c, before in started:
                raw = self._container(c)
                state = raw.attrs.get("State") or {}
                restarts = int(raw.attrs.get("RestartCount") or 0)
                failed = raw.status in ("exited", "dead") and state.get("ExitCode") != 0
                if failed or raw.status == "restarting" or restarts > before:
                    raise ProviderError(
                        f"{self._where()}: service {c.service} of {self.project} "
                        f"{raw.status} (exit code {state.get('ExitCode')}) right after its "
                        f"start: {self._log_tail(raw) or 'no output'}"
                    )
            if time.monotonic() >= end:
                return
            time.sleep(POLL)

    def start_writers(self, timeout: float = 120) -> None:
        """Start the writers (and whatever they depend on that is not running)."""
        self.start(writers=True, timeout=timeout)

    def restart_early_binds(self, under: str, before: float) -> list[str]:
        """Restart running non-writers that bind something below `under` and started
        before `before` (a Unix time); return their services.

        A bind mount is resolved when a container starts: one started while
        nothing was mounted at `under` (Caddy before the data volume came)
        sees the instance's empty directory until it restarts.
        """
        restarted = []
        writers = {c.id for c in self.containers(writers=True)}
        for raw in self._raw_containers():
            if raw.id in writers or raw.status != "running":
                continue
            sources = [m.get("Source", "") for m in raw.attrs.get("Mounts") or []]
            if not any(s == under or s.startswith(under.rstrip("/") + "/") for s in sources):
                continue
            started = _docker_time(raw.attrs.get("State", {}).get("StartedAt", ""))
            if started is not None and started >= before:
                continue
            with self._api(f"restarting {raw.name}"):
                raw.restart(timeout=10)
            restarted.append((raw.labels or {}).get(SERVICE_LABEL, raw.name))
        return sorted(restarted)

    def stop_writers(self, timeout: int = 10) -> None:
        """Stop the writers, dependents first, each given `timeout` s before it is killed."""
        for c in reversed(_ordered(self.containers(writers=True))):
            if c.status not in ("running", "restarting", "paused"):
                continue
            raw = self._container(c)
            with self._api(f"stopping container {c.name}"):
                raw.stop(timeout=timeout)

    # -- maintenance -------------------------------------------------------
    def _maintenance_mount(self) -> tuple[Any, JobMount]:
        """The Caddy container and the mount that backs its MAINTENANCE_DIR (made writable)."""
        caddy = [c for c in self.containers() if c.service == CADDY_SERVICE]
        if not caddy:
            raise ProviderError(
                f"{self._where()}: project {self.project} has no {CADDY_SERVICE!r} container "
                f"(has the instance created its containers yet?)"
            )
        raw = self._container(caddy[0])
        for m in raw.attrs.get("Mounts") or []:
            if m.get("Destination") != MAINTENANCE_DIR:
                continue
            if m.get("Type") == "volume":
                return raw, JobMount(m["Name"], MAINTENANCE_DIR, kind="volume")
            return raw, JobMount(m["Source"], MAINTENANCE_DIR)
        raise ProviderError(
            f"{self._where()}: the {CADDY_SERVICE} container of {self.project} mounts nothing "
            f"at {MAINTENANCE_DIR}; the compose file must bind the maintenance directory there"
        )

    def _listing(self, container: Any) -> list[str]:
        """The names of the files directly in MAINTENANCE_DIR, as `container` sees them."""
        with self._api(f"reading {MAINTENANCE_DIR}"):
            stream, _stat = container.get_archive(MAINTENANCE_DIR, chunk_size=CHUNK)
            data = bytearray()
            for chunk in stream:
                data += chunk
                if len(data) > MAX_LISTING_BYTES:
                    raise ProviderError(
                        f"{self._where()}: {MAINTENANCE_DIR} holds more than "
                        f"{MAX_LISTING_BYTES >> 20} MiB; it should hold a page and a few flags"
                    )
        base = MAINTENANCE_DIR.rstrip("/").rsplit("/", 1)[-1]
        names = []
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
            for member in tar.getmembers():
                parts = member.name.strip("/").split("/")
                if len(parts) == 2 and parts[0] == base and not member.isdir():
                    names.append(parts[1])
        return names

    def _change_maintenance(
        self, create: Sequence[str], remove: Callable[[str], bool] | None
    ) -> None:
        """Create the empty files `create` in MAINTENANCE_DIR and remove every other file
        whose name `remove` accepts, through helper containers (see above)."""
        caddy, mount = self._maintenance_mount()
        image = caddy.attrs["Image"]
        if remove is not None:
            doomed = [
                f"{MAINTENANCE_DIR}/{n}"
                for n in self._listing(caddy)
                if remove(n) and n not in create
            ]
            if doomed:
                result = self.run_container(
                    image,
                    doomed,
                    entrypoint=["rm", "-f"],
                    mounts=[mount],
                    network_mode="none",
                    user="0:0",
                    timeout=self.timeout,
                    label="maintenance",
                )
                if result.exit_code != 0:
                    raise ProviderError(
                        f"{self._where()}: removing {', '.join(doomed)} failed (exit code "
                        f"{result.exit_code}): {result.logs.strip() or 'no output'}"
                    )
        if create:
            name = f"{self.project}-maintenance-{secrets.token_hex(3)}"
            with self._api(f"creating the maintenance helper {name}"):
                helper = self.client.containers.create(
                    image,
                    ["true"],
                    entrypoint=[],
                    user="0:0",
                    mounts=[Mount(mount.target, mount.source, type=mount.kind)],
                    network_mode="none",
                    labels={JOB_LABEL: "maintenance"},
                    name=name,
                )
            try:
                with self._api(f"writing {', '.join(create)} in {MAINTENANCE_DIR}"):
                    helper.put_archive(MAINTENANCE_DIR, _tar({n: b"" for n in create}))
            finally:
                with self._api(f"removing the maintenance helper {name}"):
                    helper.remove(force=True)

    def set_maintenance(self, on: bool) -> None:
        """Turn the maintenance page on (create the flag file) or off (remove it)."""
        if on:
            self._change_maintenance([MAINTENANCE_FLAG], None)
        else:
            self._change_maintenance([], lambda name: name == MAINTENANCE_FLAG)

    def set_health_pass(self, token: str | None) -> None:
        """Let requests carrying `token` past the maintenance page; `None` removes every pass."""
        if token is not None and not re.fullmatch(HEALTH_PASS_TOKEN, token):
            raise ProviderError(
                f"health pass token {token[:40]!r}: expected {HEALTH_PASS_TOKEN} "
                f"(128 random bits in hex)"
            )
        create = [f"{HEALTH_PASS_PREFIX}{token}"] if token is not None else []
        self._change_maintenance(create, lambda name: name.startswith(HEALTH_PASS_PREFIX))

    # -- one-off jobs ------------------------------------------------------
    def remove_jobs(
        self, label: str, *, source: str | None = None, exited_only: bool = False
    ) -> list[str]:
        """Remove job containers `label` left by a process that died before removing them.

        Only those binding `source` when given, only stopped ones with
        `exited_only` (a running one belongs to a live run). Their names.
        """
        with self._api(f"listing {label} job containers"):
            found = self.client.containers.list(
                all=True, ignore_removed=True, filters={"label": f"{JOB_LABEL}={label}"}
            )
        removed = []
        for c in found:
            if exited_only and c.status not in ("created", "exited", "dead"):
                continue
            sources = {m.get("Source") for m in c.attrs.get("Mounts") or []}
            if source is not None and source not in sources:
                continue
            with self._api(f"removing job container {c.name}"):
                c.remove(force=True, v=True)
            removed.append(c.name)
        return removed

    def run_container(
        self,
        image: str,
        command: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        mounts: Sequence[JobMount] = (),
        timeout: float = 3600,
        entrypoint: Sequence[str] | None = None,
        network_mode: str | None = None,
        user: str | None = None,
        label: str = "job",
        log_bytes: int = LOG_TAIL_BYTES,
        working_dir: str | None = None,
        stdout_bytes: int = 0,
    ) -> JobResult:
        """Run a one-off container to its end; its exit code and the last `log_bytes` of output.

        `environment` exists for this run only (the container, and with it what
        `docker inspect` shows, is removed whatever happens). After `timeout`
        seconds the container is killed and `EngineTimeout` carries its log tail.
        With `stdout_bytes`, standard output is kept apart and whole (a job
        printing more than that is a `ProviderError`: its output is what the
        caller reads, a cut one would be wrong).
        """
        job_mounts = [Mount(m.target, m.source, type=m.kind, read_only=m.read_only) for m in mounts]
        name = f"{self.project}-{label}-{secrets.token_hex(3)}"
        with self._api(f"creating job container {name}"):
            container = self.client.containers.create(
                image,
                list(command),
                entrypoint=list(entrypoint) if entrypoint is not None else None,
                environment=dict(environment or {}),
                mounts=job_mounts,
                network_mode=network_mode,
                user=user,
                labels={JOB_LABEL: label},
                name=name,
                working_dir=working_dir,
            )
        try:
            with self._api(f"starting job container {name}"):
                container.start()
            try:
                with self._api(f"waiting for job container {name}"):
                    status = container.wait(timeout=timeout)
            except (EngineTimeout, EngineUnreachable) as exc:
                with self._api(f"killing job container {name}"):
                    container.kill()
                raise EngineTimeout(
                    f"{self._where()}: job {name} ({image}) did not end in {timeout:g} s and "
                    f"was killed: {self._log_tail(container) or 'no output'}"
                ) from exc
            code = int(status.get("StatusCode", -1))
            if not stdout_bytes:
                with self._api(f"reading the log of job container {name}"):
                    logs = _tail(container.logs(stream=True, follow=False), log_bytes)
                return JobResult(code, logs)
            with self._api(f"reading the output of job container {name}"):
                errors = container.logs(stdout=False, stderr=True, stream=True, follow=False)
                logs = _tail(errors, log_bytes)
                out = bytearray()
                for chunk in container.logs(stdout=True, stderr=False, stream=True, follow=False):
                    out += chunk
                    if len(out) > stdout_bytes:
                        raise ProviderError(
                            f"{self._where()}: job {name} ({image}) printed more than "
                            f"{stdout_bytes >> 20} MiB"
                        )
            return JobResult(code, logs, out.decode(errors="replace"))
        finally:
            with self._api(f"removing job container {name}"):
                container.remove(force=True, v=True)
