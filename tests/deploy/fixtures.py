"""Test fixtures of the deploy layer: a local image and small Ignition configs.

`build_image` makes an image without a registry through the product's
builder (deploy.providers.local.images): busybox-static and Debian's caddy imported
with `docker import`, tagged by a hash of its content so reruns reuse it.

`make_ignition` builds a small Ignition config by hand, so the provider is
tested against the Ignition spec rather than the renderer's output (the
renderer's output is deployed in tests/e2e and bench/swap.py):
an Ignition 3.4.0 config with a compose project of three services — the
front `caddy` (maintenance when `maintenance/on` exists, with the health
pass of renderers/caddyfile.py), a static `web` app, and a writer `notes`
app (busybox httpd CGI appending to the data volume).

`make_ignition(..., units=True)` adds the units an instance that runs its
own systemd needs (the lxd provider's): `app-prepare.service` creates the
compose project, `app.service` starts it once the data is mounted, the same
shape as renderers/systemd.py.

`make_ignition(..., writer_delay=s)` makes `notes` a slow starter: each
start waits `s` seconds before httpd listens, and waits for as long as a
file `.hold` exists in its data, so a test can make it never come back.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from typing import Any


def build_image(client: Any, caddy: bool = False) -> str:
    """Build (or reuse) the test image; returns its `repo:tag`.

    The builder is the product's (deploy.providers.local.images): busybox and Debian's
    caddy with `sh` as command, or with `caddy=True` the image that stands in
    for upstream `caddy:2.8.4`. `client` is unused (kept for callers).
    """
    from deploy.providers.local.images import caddy_image, tools_image

    return caddy_image() if caddy else tools_image()


def _file(path: str, data: bytes, mode: int = 0o644, gz: bool = False) -> dict[str, Any]:
    contents: dict[str, Any] = {}
    if gz:
        data = gzip.compress(data, mtime=0)
        contents["compression"] = "gzip"
    contents["source"] = "data:;base64," + base64.b64encode(data).decode()
    return {"path": path, "mode": mode, "overwrite": True, "contents": contents}


CADDYFILE = """\
{
\tadmin off
\tauto_https off
}
:80 {
\t@maint {
\t\tfile {
\t\t\troot /etc/swapyard/maintenance
\t\t\ttry_files /on
\t\t}
HEALTH_PASS\t}
\thandle @maint {
\t\theader Retry-After 30
\t\trespond "down for maintenance" 503
\t}
\t@web host web.test
\thandle @web {
\t\treverse_proxy web:WEBPORT
\t}
\t@notes host notes.test
\thandle @notes {
\t\treverse_proxy notes:8080
\t}
}
"""

# The health pass (renderers/caddyfile.py); left out, the Caddyfile is one
# rendered before the pass existed.
HEALTH_PASS = """\
\t\tnot {
\t\t\theader_regexp X-Swapyard-Health ^[0-9a-f]{32}$
\t\t\tfile {
\t\t\t\troot /etc/swapyard/maintenance
\t\t\t\ttry_files /health-{http.request.header.X-Swapyard-Health}
\t\t\t}
\t\t}
"""

ADD = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
echo "$QUERY_STRING" >> /data/notes.txt
sync
echo ok
"""

LIST = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
cat /data/notes.txt 2>/dev/null
"""


def compose_yaml(image: str, writer_delay: float | None = None) -> str:
    """The compose project of the fixture instance (the renderer's shape, simplified)."""
    root, data = "${SWAPYARD_ROOT:-/opt/swapyard}", "${SWAPYARD_DATA:-/mnt/data}"
    httpd = ["httpd", "-f", "-p", "8080", "-h", "/www"]
    writer = httpd
    if writer_delay is not None:
        start = "while [ -e /data/.hold ]; do sleep 0.2; done; "
        writer = ["sh", "-c", f"{start}sleep {writer_delay:g}; exec {' '.join(httpd)}"]
    project = {
        "services": {
            "caddy": {
                "image": image,
                "command": [
                    "caddy",
                    "run",
                    "--config",
                    "/etc/caddy/Caddyfile",
                    "--adapter",
                    "caddyfile",
                ],
                "environment": {
                    "HOME": "/tmp",
                    "XDG_DATA_HOME": "/data",
                    "XDG_CONFIG_HOME": "/tmp",
                },
                "restart": "unless-stopped",
                "ports": ["80:80", "443:443"],
                "volumes": [
                    f"{root}/Caddyfile:/etc/caddy/Caddyfile:ro",
                    f"{root}/maintenance:/etc/swapyard/maintenance:ro",
                    f"{data}/.caddy:/data",  # as the renderer does: certificates on the volume
                ],
                "labels": {"org.swapyard.writer": "false"},
            },
            "web": {
                "image": image,
                "command": httpd,
                "init": True,
                "volumes": [f"{root}/files/web:/www:ro"],
                "labels": {"org.swapyard.writer": "false"},
            },
            "notes": {
                "image": image,
                "command": writer,
                "init": True,
                "volumes": [f"{root}/files/notes:/www:ro", f"{data}/notes:/data"],
                "labels": {"org.swapyard.writer": "true"},
            },
        }
    }
    return json.dumps(project, indent=2)  # JSON is YAML


COMPOSE = "/usr/bin/docker compose --project-directory /opt/swapyard -f /opt/swapyard/compose.yaml"
PREPARE_UNIT = f"""\
[Unit]
Description=fixture: pull images and create containers
Wants=network-online.target
Requires=docker.service
After=docker.service network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
WorkingDirectory=/opt/swapyard
ExecStart={COMPOSE} pull --quiet --ignore-pull-failures
ExecStart={COMPOSE} create
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target
"""
APP_UNIT = f"""\
[Unit]
Description=fixture: the apps
Requires=docker.service
Wants=app-prepare.service
After=docker.service app-prepare.service
ConditionPathIsMountPoint=/mnt/data

[Service]
Type=oneshot
RemainAfterExit=yes
WorkingDirectory=/opt/swapyard
ExecStart={COMPOSE} up -d --remove-orphans
ExecStop={COMPOSE} down
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target
"""


def make_ignition(
    image: str,
    version: str = "v1",
    healthy: bool = True,
    writer_delay: float | None = None,
    health_pass: bool = True,
    units: bool = False,
) -> bytes:
    """An Ignition 3.4.0 config for the fixture instance; `healthy=False` breaks `web`.

    `writer_delay`: the writer `notes` starts that many seconds late (see
    above); `health_pass=False`: a maintenance page without the health pass.
    """
    opt = "/opt/swapyard"
    caddyfile = CADDYFILE.replace("WEBPORT", "8080" if healthy else "9")
    caddyfile = caddyfile.replace("HEALTH_PASS", HEALTH_PASS if health_pass else "")
    files = [
        _file(f"{opt}/compose.yaml", compose_yaml(image, writer_delay).encode()),
        _file(f"{opt}/Caddyfile", caddyfile.encode(), gz=True),
        _file(f"{opt}/maintenance/index.html", b"<h1>maintenance</h1>\n"),
        _file(f"{opt}/files/web/index.html", f"web {version}\n".encode()),
        _file(f"{opt}/files/notes/index.html", f"notes {version}\n".encode()),
        _file(f"{opt}/files/notes/cgi-bin/add", ADD.encode(), 0o755),
        _file(f"{opt}/files/notes/cgi-bin/list", LIST.encode(), 0o755),
    ]
    unit_list = [
        {
            "name": "swapyard.service",
            "enabled": True,
            "contents": "[Unit]\nDescription=swapyard compose project\n",
        }
    ]
    if units:
        unit_list = [
            {"name": "app-prepare.service", "enabled": True, "contents": PREPARE_UNIT},
            {"name": "app.service", "enabled": True, "contents": APP_UNIT},
        ]
        files.append(_file("/etc/hostname", b"fixture\n"))
    config = {
        "ignition": {"version": "3.4.0"},
        "storage": {"directories": [{"path": f"{opt}/secrets", "mode": 0o700}], "files": files},
        "systemd": {"units": unit_list},
    }
    return json.dumps(config, sort_keys=True).encode()


def caddy_available() -> bool:
    """True when the caddy binary the edge needs is installed."""
    return shutil.which("caddy") is not None


def make_spec(project: str, ignition: bytes, commit: str) -> Any:
    """The deploy spec of the fixture instance `demo` (web and notes apps, 64 MiB volume)."""
    from deploy.spec import AppCheck, DeploySpec, VolumeSpec

    apps = (AppCheck("web", "web.test", "/"), AppCheck("notes", "notes.test", "/"))
    volume = VolumeSpec(f"sy-{project}-demo", "sydata", 64 << 20)
    return DeploySpec(project, "demo", commit, ignition, apps, volume)
