"""The artifact set: rendered files with per-file and overall digests.

The overall digest is over the sorted (name, sha256) pairs, so it changes
exactly when some artifact's bytes change. `manifest()` is what `swapyard
render` writes beside the files and what `swapyard plan` reads back: the
digests plus the parts of the config that live outside the instance (DNS,
backup), which decide `dns-only` and settings-only changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RenderOptions:
    """How to render; the defaults give the redacted form used for plans and history."""

    mode: Literal["redacted", "resolved"] = "redacted"
    secrets: Callable[[str], str] | None = None  # name -> value; required when resolved
    image_map: Mapping[str, str] = field(default_factory=dict)  # upstream image -> local image
    https: bool | None = None  # overrides instance.https when set (local use)
    data_device: str | None = None  # block device of the data volume; default by-label
    # False when the volume is attached after first boot (the new side of a swap):
    # Ignition then leaves the volume alone and only the mount unit mounts it.
    volume_at_boot: bool = True
    compose_sysext_sha256: str | None = None  # hex; overrides the pinned sysext hash


@dataclass(frozen=True)
class ArtifactSet:
    """An instance's rendered files, keyed by relative path (e.g. `units/app.service`)."""

    instance: str  # "project/name"
    files: tuple[tuple[str, bytes], ...]
    outside: Mapping[str, Any] = field(default_factory=dict)  # dns/backup settings, redacted

    def __getitem__(self, name: str) -> bytes:
        """The bytes of one artifact; KeyError when there is none by that name."""
        for path, data in self.files:
            if path == name:
                return data
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Artifact names, in order."""
        return tuple(path for path, _ in self.files)

    @property
    def digests(self) -> dict[str, str]:
        """Artifact name -> hex sha256 of its bytes."""
        return {path: sha256(data) for path, data in self.files}

    @property
    def digest(self) -> str:
        """`sha256:<hex>` over the sorted (name, digest) pairs: changes with any byte."""
        lines = "".join(f"{path}\0{d}\n" for path, d in sorted(self.digests.items()))
        return "sha256:" + sha256(lines.encode())

    def manifest(self) -> dict[str, Any]:
        """Digests plus the outside settings: what `swapyard plan` compares."""
        return {
            "instance": self.instance,
            "digest": self.digest,
            "artifacts": dict(sorted(self.digests.items())),
            **{k: self.outside[k] for k in sorted(self.outside)},
        }

    def write(self, directory: Path) -> None:
        """Write every artifact and manifest.json under `directory`, removing stale files."""
        directory.mkdir(parents=True, exist_ok=True)
        wanted = {*self.names, MANIFEST}
        for old in sorted(directory.rglob("*"), reverse=True):
            rel = old.relative_to(directory).as_posix()
            if old.is_file() and rel not in wanted:
                old.unlink()
        for path, data in self.files:
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (directory / MANIFEST).write_text(
            json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n"
        )
