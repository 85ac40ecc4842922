"""Local images for machines that cannot reach a registry (offline demos, tests).

Each image is a root filesystem made of binaries from Debian packages
(busybox-static, caddy and the libraries it links), imported with
`docker import` and tagged by a hash of its bytes and image settings, so a
second build finds the image present and reuses it.

- `caddy_image()` behaves like upstream `caddy:2.8.4` for a rendered compose
  file: `caddy run --config /etc/caddy/Caddyfile --adapter caddyfile`, XDG
  data and config in /data and /config, a shell and busybox beside it.
- `tools_image()` holds the same files with `sh` as its command; it stands
  in for `busybox:*` (it *is* busybox) and runs test containers.
- `standin_image(upstream)` stands in for any other upstream image (Ghost,
  Nextcloud, PostgreSQL, ...): every port that catalog and custom apps
  listen on answers `200` with a page naming the image it stands in for,
  and the database healthcheck commands of schemas.catalog exit 0, so
  `depends_on: service_healthy` passes. Nothing of the real app runs.

`image_map_for_repository(path)` maps every upstream image the validated
instances of a config repository use to one of these (the IMAGE_MAP setting).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from deploy.providers.rootfs import BUSYBOX, PATH_ENV, import_image, rootfs_tar

CADDY_REPO = "swapyard-local/caddy"
TOOLS_REPO = "swapyard-local/tools"
STANDIN_REPO = "swapyard-local/standin"
CADDY = "/usr/bin/caddy"
UPSTREAM_CADDY = "caddy:2.8.4"
# Ports the catalog's apps listen on (nextcloud/wordpress/vaultwarden 80,
# ghost 2368, forgejo 3000, uptime-kuma 3001) and a common custom one.
CATALOG_PORTS = (80, 2368, 3000, 3001, 8080)
# Healthcheck commands used by schemas.catalog's databases (and the example's).
HEALTH_STUBS = ("pg_isready", "mysqladmin", "healthcheck.sh", "redis-cli")

STANDIN_MAIN = """\
#!/bin/sh
# swapyard stand-in: answer HTTP on every configured port until stopped.
for port in $(echo "$SWAPYARD_STANDIN_PORTS" | tr , " "); do
    nc -ll -p "$port" -e /usr/local/bin/standin-answer &
done
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
wait
"""

STANDIN_ANSWER = """\
#!/bin/sh
# One HTTP exchange: read the request head, answer 200 with a page.
read -r method target _proto
while read -r line; do
    case "$line" in ""|"$(printf '\\r')") break ;; esac
done
body="<!doctype html><html><head><title>stand-in for $SWAPYARD_STANDIN_FOR</title></head>
<body><h1>stand-in for $SWAPYARD_STANDIN_FOR</h1>
<p>swapyard built this image offline; the real $SWAPYARD_STANDIN_FOR is not running.</p>
<p>container $(hostname), $method $target</p></body></html>
"
printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/html\\r\\nContent-Length: %s\\r\\n' "${#body}"
printf 'Connection: close\\r\\n\\r\\n%s' "$body"
"""

HEALTH_STUB = "#!/bin/sh\n# swapyard stand-in healthcheck: the stand-in is always ready.\nexit 0\n"

CADDY_CHANGES = (
    PATH_ENV,
    "ENV XDG_CONFIG_HOME=/config",
    "ENV XDG_DATA_HOME=/data",
    "ENV HOME=/root",
    "WORKDIR /srv",
    'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]',
)


def caddy_image() -> str:
    """An image like upstream `caddy:2.8.4` (Debian's caddy, plus busybox)."""
    return import_image(CADDY_REPO, rootfs_tar([BUSYBOX, CADDY]), CADDY_CHANGES)


def tools_image() -> str:
    """Busybox and caddy with `sh` as the command: `busybox:*` and test containers."""
    changes = (PATH_ENV, "ENV HOME=/root", "WORKDIR /", 'CMD ["/bin/sh"]')
    return import_image(TOOLS_REPO, rootfs_tar([BUSYBOX, CADDY]), changes)


def _slug(image: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", image.lower()).strip("-")[:60] or "image"


def standin_image(upstream: str, ports: Iterable[int] = CATALOG_PORTS) -> str:
    """A busybox image answering HTTP on `ports` in place of `upstream`.

    Its entrypoint ignores any command, so a compose `command:` meant for the
    real image cannot break it; healthcheck commands of the catalog's
    databases exist and succeed.
    """
    files = {
        "usr/local/bin/standin": (STANDIN_MAIN, 0o755),
        "usr/local/bin/standin-answer": (STANDIN_ANSWER, 0o755),
        **{f"usr/local/bin/{name}": (HEALTH_STUB, 0o755) for name in HEALTH_STUBS},
    }
    port_list = ",".join(str(p) for p in sorted(set(ports)))
    changes = (
        PATH_ENV,
        f"ENV SWAPYARD_STANDIN_FOR={upstream}",
        f"ENV SWAPYARD_STANDIN_PORTS={port_list}",
        "WORKDIR /",
        'ENTRYPOINT ["/usr/local/bin/standin"]',
        "CMD []",
    )
    repo = f"{STANDIN_REPO}-{_slug(upstream)}"
    return import_image(repo, rootfs_tar([BUSYBOX], files), changes)


def _repository(image: str) -> str:
    """`caddy` for `caddy:2.8.4`, `docker.io/library/caddy@sha256:...` and the like."""
    bare = image.split("@", 1)[0]
    if ":" in bare.rsplit("/", 1)[-1]:
        bare = bare.rsplit(":", 1)[0]
    for prefix in ("docker.io/", "library/"):
        bare = bare.removeprefix(prefix)
    return bare


def image_map(images: Iterable[str], ports: Iterable[int] = ()) -> dict[str, str]:
    """Upstream image -> local image: caddy to `caddy_image`, busybox to
    `tools_image`, anything else to a stand-in listening on the catalog's
    ports and `ports`."""
    all_ports = (*CATALOG_PORTS, *ports)
    out: dict[str, str] = {}
    for image in sorted(set(images)):
        name = _repository(image)
        if name == "caddy":
            out[image] = caddy_image()
        elif name == "busybox":
            out[image] = tools_image()
        else:
            out[image] = standin_image(image, all_ports)
    return out


def repository_images(path: str | os.PathLike[str]) -> tuple[set[str], set[int]]:
    """Every image (the front Caddy included) and app port of a repository's
    valid, present instances."""
    from renderers.layout import CADDY_IMAGE
    from schemas import load_repo

    repo = load_repo(str(path))
    images, ports = {CADDY_IMAGE}, set()
    for instance in repo.instances:
        if instance.state != "present":
            continue
        for app in instance.apps:
            if app.port:
                ports.add(int(app.port))
            for service in app.services:
                images.add(service.image)
                if service.port:
                    ports.add(int(service.port))
    return images, ports


def image_map_for_repository(path: str | os.PathLike[str]) -> dict[str, str]:
    """Build (or reuse) the local images a config repository needs; its IMAGE_MAP."""
    images, ports = repository_images(path)
    return image_map(images, ports)
