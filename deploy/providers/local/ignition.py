"""Materialize an Ignition 3.x config into a directory standing in for the root filesystem.

Written against the Ignition 3.4.0 spec, not against the renderer: the
`storage.directories`, `storage.files` (data: URLs, optional gzip) and
`storage.links` sections, plus `systemd.units` (written out for reference,
not run). A file with a remote source (e.g. a Flatcar sysext image) is
skipped with a log line when it lies outside the compose project's
directory, since the local engine stands in for the OS; below it, it is an
error. Anything else that would need a network fetch or a disk layout
(`ignition.config.merge`, `storage.disks`) is refused with a clear message.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any

from deploy.providers.types import IgnitionError

log = logging.getLogger(__name__)


def decode_data_url(url: str) -> bytes:
    """Decode an RFC 2397 `data:` URL (base64 or percent-encoded) to bytes."""
    if not url.startswith("data:") or "," not in url:
        raise IgnitionError(f"only data: URLs can be materialized locally, not {url[:40]!r}")
    meta, _, payload = url[5:].partition(",")
    if meta.split(";")[-1] == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError as exc:
            raise IgnitionError(f"invalid base64 in data URL: {exc}") from exc
    return urllib.parse.unquote_to_bytes(payload)


def parse(ignition: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Parse and sanity-check an Ignition config; raise `IgnitionError` when unusable."""
    if isinstance(ignition, dict):
        config = ignition
    else:
        try:
            config = json.loads(ignition)
        except ValueError as exc:
            raise IgnitionError(f"the Ignition config is not JSON: {exc}") from exc
    version = str(config.get("ignition", {}).get("version", ""))
    if not version.startswith("3."):
        raise IgnitionError(f"ignition.version {version!r} is not 3.x (expected 3.4.0)")
    cfg = config["ignition"].get("config", {})
    if cfg.get("merge") or cfg.get("replace"):
        raise IgnitionError("ignition.config.merge/replace needs a network fetch; inline it")
    for section in ("disks", "raid", "luks"):
        if config.get("storage", {}).get(section):
            raise IgnitionError(f"storage.{section} cannot be materialized by a local instance")
    return config


def _target(root: Path, path: str) -> Path:
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise IgnitionError(f"{path!r}: Ignition paths must be absolute without '..'")
    return root.joinpath(*pure.parts[1:])


def _contents(entry: dict[str, Any]) -> bytes:
    contents = entry.get("contents") or {}
    source = contents.get("source")
    data = b"" if source in (None, "") else decode_data_url(source)
    compression = contents.get("compression") or ""
    if compression == "gzip":
        data = gzip.decompress(data)
    elif compression:
        raise IgnitionError(f"{entry['path']}: unsupported compression {compression!r}")
    expected = (contents.get("verification") or {}).get("hash")
    if expected:  # of the decompressed contents, as the spec says
        kind, _, value = expected.partition("-")
        if kind not in ("sha256", "sha512"):
            raise IgnitionError(f"{entry['path']}: unsupported hash type {kind!r}")
        if hashlib.new(kind, data).hexdigest() != value.lower():
            raise IgnitionError(f"{entry['path']}: contents do not match {expected[:20]}...")
    return data


def _owner(target: Path, entry: dict[str, Any]) -> None:
    """Apply numeric `user.id`/`group.id` (names would need the instance's passwd)."""
    uid = (entry.get("user") or {}).get("id")
    gid = (entry.get("group") or {}).get("id")
    if uid is not None or gid is not None:
        os.chown(
            target, -1 if uid is None else uid, -1 if gid is None else gid, follow_symlinks=False
        )


def _remote(entry: dict[str, Any]) -> bool:
    source = (entry.get("contents") or {}).get("source") or ""
    return bool(source) and not source.startswith("data:")


def materialize(
    ignition: bytes | str | dict[str, Any], root: Path, needed: str = "/opt/swapyard"
) -> dict[str, Any]:
    """Write the files, directories, links and units of `ignition` under `root`.

    `root` stands for `/`; e.g. `/opt/swapyard/compose.yaml` lands in
    `root/opt/swapyard/compose.yaml`. Units go to `root/etc/systemd/system`.
    Remote sources are skipped outside `needed` and refused below it.
    Returns the parsed config.
    """
    config = parse(ignition)
    storage = config.get("storage", {})
    for entry in storage.get("directories", []):
        target = _target(root, entry["path"])
        target.mkdir(parents=True, exist_ok=True)
        if entry.get("mode") is not None:
            target.chmod(entry["mode"])
        _owner(target, entry)
    for entry in storage.get("files", []):
        if _remote(entry) and not entry["path"].startswith(needed.rstrip("/") + "/"):
            log.info("%s: remote source skipped (the local engine stands in)", entry["path"])
            continue
        target = _target(root, entry["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        data = _contents(entry)
        appends = b"".join(
            _contents({"path": entry["path"], "contents": a}) for a in entry.get("append", [])
        )
        target.write_bytes(data + appends)
        target.chmod(entry.get("mode") if entry.get("mode") is not None else 0o644)
        _owner(target, entry)
    for entry in storage.get("links", []):
        target = _target(root, entry["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if entry.get("hard"):
            target.hardlink_to(_target(root, entry["target"]))
        elif entry["target"].startswith("/"):  # stay inside root, never the host's path
            target.symlink_to(os.path.relpath(_target(root, entry["target"]), target.parent))
        else:
            target.symlink_to(entry["target"])
    units = root / "etc/systemd/system"
    for unit in config.get("systemd", {}).get("units", []):
        units.mkdir(parents=True, exist_ok=True)
        if unit.get("contents") is not None:
            (units / unit["name"]).write_text(unit["contents"])
        for dropin in unit.get("dropins", []):
            d = units / f"{unit['name']}.d"
            d.mkdir(parents=True, exist_ok=True)
            (d / dropin["name"]).write_text(dropin.get("contents") or "")
    return config
