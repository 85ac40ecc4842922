"""Docker images made of binaries from the control host's Debian packages (offline builds).

A root filesystem is put together from binaries and the libraries they link
(`ldd`), busybox's applets, the CA bundle and a minimal /etc, as one
deterministic tar; `docker import` makes it an image tagged by a hash of
those bytes and its settings, so a second build finds it present. No
registry is needed: this is how offline machines (and the tests) get the
images the drivers run. The local driver builds its Caddy and stand-in
images with it (`deploy.providers.local.images`), the remote toolkit its
restic job image (`deploy.providers.remote.restic`).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.providers.types import ProviderError

BUSYBOX = "/bin/busybox"
PATH_ENV = "ENV PATH=/usr/local/bin:/usr/bin:/bin"

ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}


def _run(argv: Sequence[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The one subprocess seam of this module (ldd, busybox, docker)."""
    try:
        return subprocess.run(list(argv), input=data, capture_output=True, timeout=300)
    except FileNotFoundError as exc:
        raise ProviderError(f"{argv[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"`{' '.join(argv[:2])}` did not finish in 300 s") from exc


def libraries(binary: str) -> list[str]:
    """Absolute paths of the shared libraries `binary` links (none when static)."""
    out = _run(["ldd", binary]).stdout.decode(errors="replace")
    return sorted({p for line in out.splitlines() for p in line.split() if p.startswith("/")})


def _require(*binaries: str) -> None:
    for binary in binaries:
        if not Path(binary).exists():
            raise ProviderError(
                f"{binary} is missing; install its Debian package (busybox-static, caddy, restic)"
            )


def rootfs_tar(
    binaries: Sequence[str], files: Mapping[str, tuple[str, int]] | None = None
) -> bytes:
    """A deterministic tar of a root filesystem: `binaries` with their libraries,
    busybox applet links in /bin, /etc basics, the usual empty directories, and
    `files` (path -> (text, mode))."""
    _require(*binaries)
    paths = sorted({*binaries, *(lib for b in binaries for lib in libraries(b))})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def _add(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "tmp", "root", "etc/caddy", "srv", "data", "config", "usr/local/bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for path in paths:
            _add(path.lstrip("/"), Path(path).resolve().read_bytes(), 0o755)
        if BUSYBOX in binaries:
            applets = _run([BUSYBOX, "--list"]).stdout.decode().split()
            for applet in sorted(set(applets) - {"busybox"}):
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, BUSYBOX
                tar.addfile(link)
        certs = Path("/etc/ssl/certs/ca-certificates.crt")
        if certs.exists():
            _add("etc/ssl/certs/ca-certificates.crt", certs.read_bytes(), 0o644)
        for name, text in ETC.items():
            _add(name, text.encode(), 0o644)
        for name, (text, mode) in sorted((files or {}).items()):
            _add(name.lstrip("/"), text.encode(), mode)
    return buf.getvalue()


def image_present(ref: str) -> bool:
    """Whether the local engine has the image `ref`."""
    return _run(["docker", "image", "inspect", ref]).returncode == 0


def import_image(repository: str, rootfs: bytes, changes: Sequence[str]) -> str:
    """`docker import` the root filesystem unless an image with its content tag exists."""
    digest = hashlib.sha256(rootfs)
    for change in changes:
        digest.update(b"\0" + change.encode())
    ref = f"{repository}:{digest.hexdigest()[:12]}"
    if image_present(ref):
        return ref
    args = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", ref]
    result = _run(args, rootfs)
    if result.returncode != 0:
        raise ProviderError(f"docker import {ref} failed: {result.stderr.decode()[-500:]}")
    return ref
