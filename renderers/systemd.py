"""systemd units: the data mount, and the compose project in two stages.

- `mnt-data.mount` mounts the data volume by filesystem label. It carries
  `nofail`: during a swap the new instance boots before the volume is moved
  to it, and a missing volume must not send the boot to emergency mode.
- `app-prepare.service` pulls images and creates containers without the
  data volume, so a new instance is ready before the swap moves the volume.
- `app.service` starts the project once the volume is mounted
  (`Requires=`/`After=` the mount), and stops it with `docker compose down`.

Compose comes from the docker-compose sysext (`/usr/bin/docker compose`
works once systemd-sysext has merged it). Nothing here enables a login.
"""

from __future__ import annotations

from renderers import layout
from schemas.model import Instance

PREPARE_UNIT = "app-prepare.service"
APP_UNIT = "app.service"
DOCKER = "/usr/bin/docker"


def _compose(args: str) -> str:
    project = f"--project-directory {layout.ROOT} -f {layout.ROOT}/{layout.COMPOSE}"
    return f"{DOCKER} compose {project} {args}"


def _environment() -> str:
    return f"Environment=SWAPYARD_DATA={layout.DATA} SWAPYARD_ROOT={layout.ROOT}"


def _unit(sections: list[tuple[str, list[str]]]) -> bytes:
    blocks = ["\n".join([f"[{name}]", *lines]) for name, lines in sections]
    return ("\n\n".join(blocks) + "\n").encode()


def mount_unit(instance: Instance) -> bytes:
    """`mnt-data.mount`: the data volume by label at /mnt/data, not required for boot."""
    volume = instance.volume
    return _unit(
        [
            (
                "Unit",
                [
                    f"Description=swapyard data volume (label {volume.label})",
                ],
            ),
            (
                "Mount",
                [
                    f"What=/dev/disk/by-label/{volume.label}",
                    f"Where={layout.DATA}",
                    f"Type={volume.filesystem}",
                    "Options=nofail,noatime",
                ],
            ),
            ("Install", ["WantedBy=local-fs.target"]),
        ]
    )


def prepare_unit(instance: Instance) -> bytes:
    """`app-prepare.service`: pull images and create containers; needs no data volume."""
    return _unit(
        [
            (
                "Unit",
                [
                    f"Description=swapyard: pull images and create containers of {instance.key}",
                    "Wants=network-online.target",
                    "Requires=docker.service",
                    "After=docker.service network-online.target systemd-sysext.service",
                ],
            ),
            (
                "Service",
                [
                    "Type=oneshot",
                    "RemainAfterExit=yes",
                    _environment(),
                    f"WorkingDirectory={layout.ROOT}",
                    f"ExecStart={_compose('pull --quiet --ignore-pull-failures')}",
                    f"ExecStart={_compose('create')}",
                    "TimeoutStartSec=30min",
                ],
            ),
            ("Install", ["WantedBy=multi-user.target"]),
        ]
    )


def app_unit(instance: Instance) -> bytes:
    """`app.service`: `docker compose up -d` once docker and the data mount are there."""
    return _unit(
        [
            (
                "Unit",
                [
                    f"Description=swapyard: the apps of {instance.key}",
                    f"Requires=docker.service {layout.DATA_MOUNT_UNIT}",
                    f"Wants={PREPARE_UNIT} network-online.target",
                    f"After=docker.service {layout.DATA_MOUNT_UNIT} {PREPARE_UNIT} "
                    "network-online.target systemd-sysext.service",
                ],
            ),
            (
                "Service",
                [
                    "Type=oneshot",
                    "RemainAfterExit=yes",
                    _environment(),
                    f"WorkingDirectory={layout.ROOT}",
                    f"ExecStart={_compose('up -d --remove-orphans')}",
                    f"ExecStop={_compose('down')}",
                    "TimeoutStartSec=30min",
                ],
            ),
            ("Install", ["WantedBy=multi-user.target"]),
        ]
    )


def render_units(instance: Instance) -> dict[str, bytes]:
    """Every unit of the instance, unit name -> bytes."""
    return {
        layout.DATA_MOUNT_UNIT: mount_unit(instance),
        PREPARE_UNIT: prepare_unit(instance),
        APP_UNIT: app_unit(instance),
    }
