"""cloud-init user-data from an Ignition config: the same instance on a generic Debian image.

`render_cloudinit(ignition)` turns one Ignition config (bytes, as
`renderers.ignition.render_ignition` makes them) into a `#cloud-config`
document for cloud-init 22.4 (Debian 12's package). The Ignition config
stays the one description of an instance that a provider receives; a driver
whose image boots with cloud-init (lxd) calls this on it, so both targets
carry the same bytes. Pure: bytes in, bytes out, deterministic (sorted keys,
`renderers.yamlout`).

What is carried, byte for byte:

- every `storage.files` entry with a `data:` URL (or no contents: an empty
  file) as a `write_files` entry: `encoding: b64` (`gz+b64` when Ignition
  says `compression: gzip`; the gzip stream is checked here, since one bad
  entry would make cloud-init skip every file after it), `permissions` as an
  octal string (Ignition's default 0644), `owner: root:root`;
- `storage.directories` as `bootcmd` `install -d -m MODE PATH`: bootcmd runs
  before write_files, and cloud-init writes a file before it sets its mode,
  so a 0700 directory must exist first for its 0600 secrets never to be
  readable (it runs on every boot; the result is the same each time);
- the hostname (`/etc/hostname`'s single line) as `hostname` with
  `preserve_hostname: false`: writing the file alone would be overwritten by
  cloud-init's own set_hostname, which takes the platform's name;
- the timezone (the `/etc/localtime` link into /usr/share/zoneinfo) as
  `timezone`;
- every `systemd.units` entry (and its drop-ins) as a file under
  /etc/systemd/system, then a `runcmd`: `systemctl daemon-reload`, mask the
  masked units, enable (or disable) the others, and start
  `app-prepare.service` with `--no-block`. runcmd runs late in the first
  boot, when the boot transaction is already decided, so enabling alone
  would only take effect at the next boot; blocking would hold cloud-init's
  final stage (and `cloud-init status --wait`) until the images are there.

Added for this target only: the drop-in
`/etc/systemd/system/app-prepare.service.d/retry.conf` (`Restart=on-failure`,
a short `RestartSec`, no start limit). Offline, app-prepare's `docker compose
create` fails until swapyard has copied the images into the instance's
engine through the Docker API; the retries make it succeed soon after,
without swapyard reaching into systemd.

Dropped, because they only mean something on Flatcar:

- the docker-compose sysext (a remote https file under
  /opt/extensions/docker-compose/) and its /etc/extensions link: the base
  image ships the compose plugin;
- `storage.filesystems` without a mount path and without a wipe request (the
  data volume): the hypervisor attaches the volume and mounts it at
  /mnt/data;
- `ignition.timeouts`, `ignition.proxy`, `ignition.security`: they only
  govern Ignition's own fetches, and no remote source is carried.

Refused with a `CloudInitError` naming the field: remote sources anywhere
else, other links, `append`, non-root owners, disks, raid, luks,
filesystems Ignition would mount or wipe, config merge/replace, users and
groups (`passwd`), kernel arguments, and any key this module does not know.
Empty sections count as absent, as in Ignition.

The user-data logs nobody in: no user, no password, no SSH key,
`ssh_pwauth: false`, `disable_root: true`. `users: {}` keeps cloud-init from
creating its default user; it is the empty mapping rather than the empty
list because 22.4's schema wants at least one item in the list form (both
mean "no users" to it). The network is not touched (the image configures
eth0). A resolved render holds the instance's secrets, as the Ignition
config does; see docs/renderers.md for who can read user-data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
import shlex
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from renderers import yamlout
from renderers.systemd import PREPARE_UNIT
from schemas.errors import RenderError

HEADER = "#cloud-config\n"
USER_DATA = "cloud-init.yaml"  # its file name where `swapyard render --format cloud-init` writes it
UNIT_DIR = "/etc/systemd/system"
OWNER = "root:root"
DEFAULT_FILE_MODE = 0o644  # Ignition's default for a file without `mode`
DEFAULT_DIR_MODE = 0o755  # ... and for a directory
UNIT_MODE = 0o644
RETRY_DROPIN = "retry.conf"
RETRY_SECONDS = 5
RETRY_CONF = (
    "# swapyard (cloud-init instances): retry until the images are in the engine\n"
    "[Unit]\n"
    "StartLimitIntervalSec=0\n"
    "\n"
    "[Service]\n"
    "Restart=on-failure\n"
    f"RestartSec={RETRY_SECONDS}\n"
).encode()
# A gzip'd file is checked by inflating it here; past this many bytes it is refused
# (what a gzip bomb would make cloud-init write on the instance).
MAX_INFLATED_BYTES = 256 * 1024 * 1024

COMPOSE_SYSEXT_DIR = "/opt/extensions/docker-compose/"
COMPOSE_SYSEXT_LINK = "/etc/extensions/docker-compose.raw"
SYSEXT_PLACES = ("/opt/extensions/", "/etc/extensions/")
HOSTNAME_FILE = "/etc/hostname"
LOCALTIME = "/etc/localtime"
ZONEINFO = "/usr/share/zoneinfo/"

_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_TIMEZONE = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
_UNIT_NAME = re.compile(
    r"[A-Za-z0-9:_.\\@-]+\.(service|socket|device|mount|automount|swap|target|path|timer|slice|scope)"
)
_DROPIN_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]+\.conf")
_VERSION = re.compile(r"3\.[0-4]\.0")

_TOP_KEYS = {"ignition", "storage", "systemd", "passwd", "kernelArguments"}
_IGNITION_KEYS = {"version", "config", "timeouts", "proxy", "security"}
_STORAGE_KEYS = {"files", "directories", "links", "filesystems", "disks", "raid", "luks"}
_NODE_KEYS = {"path", "overwrite", "user", "group"}
_FILE_KEYS = _NODE_KEYS | {"mode", "contents", "append"}
_DIR_KEYS = _NODE_KEYS | {"mode"}
_LINK_KEYS = _NODE_KEYS | {"target", "hard"}
_RESOURCE_KEYS = {"source", "compression", "httpHeaders", "verification"}
_UNIT_KEYS = {"name", "enabled", "mask", "contents", "dropins"}
_DROPIN_KEYS = {"name", "contents"}
_FILESYSTEM_KEYS = {
    "device",
    "format",
    "label",
    "uuid",
    "options",
    "wipeFilesystem",
    "path",
    "mountOptions",
}


class CloudInitError(RenderError, ValueError):
    """An Ignition config that cloud-init user-data cannot carry; names the field."""

    def __init__(self, where: str, message: str):
        self.field = where
        super().__init__(
            f"ignition.json: {where}: {message}" if where else f"ignition.json: {message}"
        )


@dataclass
class _UserData:
    """What the walk over the Ignition config collects."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> write_files entry
    directories: dict[str, int] = field(default_factory=dict)  # path -> mode
    hostname: str | None = None
    timezone: str | None = None
    units: dict[str, tuple[bool | None, bool]] = field(default_factory=dict)  # enabled, mask

    def add_file(self, where: str, path: str, entry: dict[str, str]) -> None:
        if path in self.files:
            raise CloudInitError(where, f"{path} is written twice")
        self.files[path] = entry


def render_cloudinit(ignition: bytes) -> bytes:
    """`#cloud-config` user-data carrying what `ignition` describes (see the module docstring).

    Raises `CloudInitError` for input that is not an Ignition 3.x config, and for
    any construct the user-data cannot carry, naming its field.
    """
    config = _parse(ignition)
    data = _UserData()
    _check_keys(config, _TOP_KEYS, "")
    _ignition_section(_object(config.get("ignition"), "ignition"))
    if not _empty(config.get("passwd")):
        raise CloudInitError("passwd", "users and groups are not carried: instances have no login")
    if not _empty(config.get("kernelArguments")):
        raise CloudInitError(
            "kernelArguments", "not carried: a container runs on the host's kernel"
        )
    storage = _object(config.get("storage"), "storage")
    _check_keys(storage, _STORAGE_KEYS, "storage")
    for key in ("disks", "raid", "luks"):
        if not _empty(storage.get(key)):
            raise CloudInitError(
                f"storage.{key}", "not carried: the hypervisor provides the instance's storage"
            )
    _filesystems(storage)
    _files(storage, data)
    _directories(storage, data)
    _links(storage, data)
    _units(_object(config.get("systemd"), "systemd"), data)
    return (HEADER + yamlout.dump(_document(data))).encode()


def _parse(ignition: bytes) -> dict[str, Any]:
    try:
        config = json.loads(ignition.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CloudInitError("", f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CloudInitError("", f"not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise CloudInitError("", "not JSON this renderer can read: nested too deeply") from None
    if not isinstance(config, dict):
        raise CloudInitError("", f"expected a JSON object, found {_kind(config)}")
    return config


def _ignition_section(section: dict[str, Any]) -> None:
    _check_keys(section, _IGNITION_KEYS, "ignition")
    version = section.get("version")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise CloudInitError(
            "ignition.version", f"found {version!r}; expected an Ignition spec 3.0.0 to 3.4.0"
        )
    if not _empty(section.get("config")):
        raise CloudInitError(
            "ignition.config", "merge and replace are not carried: render one complete config"
        )


def _filesystems(storage: dict[str, Any]) -> None:
    for where, fs in _entries(storage, "filesystems", _FILESYSTEM_KEYS):
        if fs.get("path"):
            raise CloudInitError(f"{where}.path", "a filesystem Ignition mounts is not carried")
        if fs.get("wipeFilesystem") is True:
            raise CloudInitError(
                f"{where}.wipeFilesystem", "a filesystem Ignition wipes is not carried"
            )
        # Otherwise it is the data volume: the hypervisor mounts it at /mnt/data.


def _files(storage: dict[str, Any], data: _UserData) -> None:
    for where, entry in _entries(storage, "files", _FILE_KEYS):
        path = _path(entry, where)
        _root_owned(entry, where)
        if path.startswith(COMPOSE_SYSEXT_DIR):
            continue  # the base image ships compose
        if path.startswith(SYSEXT_PLACES):
            raise CloudInitError(
                where,
                f"{path}: only the docker-compose sysext is dropped; other sysexts are not carried",
            )
        if not _empty(entry.get("append")):
            raise CloudInitError(f"{where}.append", f"{path}: appending is not carried")
        mode = _mode(entry, where, DEFAULT_FILE_MODE)
        contents = _object(entry.get("contents"), f"{where}.contents")
        _check_keys(contents, _RESOURCE_KEYS, f"{where}.contents")
        raw, compressed = _contents(contents, f"{where}.contents", path)
        if path == HOSTNAME_FILE:
            data.hostname = _hostname(
                _inflate(raw, f"{where}.contents") if compressed else raw, where
            )
            continue
        data.add_file(
            where,
            path,
            {
                "path": path,
                "content": base64.b64encode(raw).decode("ascii"),
                "encoding": "gz+b64" if compressed else "b64",
                "owner": OWNER,
                "permissions": _octal(mode),
            },
        )


def _contents(contents: dict[str, Any], where: str, path: str) -> tuple[bytes, bool]:
    """The bytes a file entry writes, and whether they are gzip'd (checked either way)."""
    source = contents.get("source")
    if source is None:
        raw = b""
    elif not isinstance(source, str):
        raise CloudInitError(f"{where}.source", f"expected a string, found {_kind(source)}")
    elif not source.startswith("data:"):
        scheme = source.partition(":")[0] if ":" in source else "(none)"
        raise CloudInitError(
            f"{where}.source",
            f"{path}: a {scheme}: source cannot be carried (the instance fetches nothing); "
            "only inline data: URLs are",
        )
    else:
        raw = _data_url(source, f"{where}.source")
    if not _empty(contents.get("httpHeaders")):
        raise CloudInitError(f"{where}.httpHeaders", "only apply to http sources")
    compression = contents.get("compression")
    if compression not in (None, "", "gzip"):
        raise CloudInitError(
            f"{where}.compression", f"found {compression!r}; expected gzip or nothing"
        )
    compressed = compression == "gzip"
    if compressed:
        if source is None:
            raise CloudInitError(f"{where}.compression", "gzip without a source")
        digests = _inflate_digests(raw, where)
    else:
        digests = {
            "sha256": hashlib.sha256(raw).hexdigest(),
            "sha512": hashlib.sha512(raw).hexdigest(),
        }
    _verify(contents.get("verification"), digests, f"{where}.verification")
    return raw, compressed


def _data_url(url: str, where: str) -> bytes:
    """The bytes of an RFC 2397 data URL (base64 or percent-encoded)."""
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma:
        raise CloudInitError(where, "a data: URL without ',' before its data")
    if header.split(";")[-1].strip().lower() == "base64":
        try:
            return base64.b64decode(urllib.parse.unquote(payload), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CloudInitError(where, f"the data: URL's base64 is invalid ({exc})") from None
    return urllib.parse.unquote_to_bytes(payload)


def _inflate_chunks(raw: bytes, where: str) -> Iterator[bytes]:
    """The inflated bytes of a gzip stream (members concatenated), in bounded chunks."""
    rest, total = raw, 0
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while not inflater.eof:
                chunk = inflater.decompress(pending, 1 << 20)
                pending = inflater.unconsumed_tail
                if not chunk and not pending:
                    break  # the input ended before the stream did
                total += len(chunk)
                if total > MAX_INFLATED_BYTES:
                    raise CloudInitError(
                        where, f"inflates past {MAX_INFLATED_BYTES} bytes; not carried"
                    )
                yield chunk
        except zlib.error as exc:
            raise CloudInitError(where, f"invalid gzip data ({exc})") from None
        if not inflater.eof:
            raise CloudInitError(where, "truncated gzip data")
        rest = inflater.unused_data
        if not rest:
            return


def _inflate_digests(raw: bytes, where: str) -> dict[str, str]:
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    for chunk in _inflate_chunks(raw, where):
        sha256.update(chunk)
        sha512.update(chunk)
    return {"sha256": sha256.hexdigest(), "sha512": sha512.hexdigest()}


def _inflate(raw: bytes, where: str) -> bytes:
    return b"".join(_inflate_chunks(raw, where))


def _verify(verification: object, digests: dict[str, str], where: str) -> None:
    """Ignition's `verification.hash` over the file's (inflated) bytes, checked here."""
    if _empty(verification):
        return
    spec = _object(verification, where)
    _check_keys(spec, {"hash"}, where)
    value = spec.get("hash")
    if value is None:
        return
    kind, dash, expected = str(value).partition("-")
    if not dash or kind not in digests:
        raise CloudInitError(
            f"{where}.hash", f"found {value!r}; expected sha256-<hex> or sha512-<hex>"
        )
    if expected.lower() != digests[kind]:
        raise CloudInitError(f"{where}.hash", f"the data does not match {value!r}")


def _hostname(raw: bytes, where: str) -> str:
    text = raw.decode("ascii", errors="replace")
    name = text[:-1] if text.endswith("\n") else text
    if not _HOSTNAME.fullmatch(name) or len(name) > 253:
        raise CloudInitError(where, f"{HOSTNAME_FILE} must hold one hostname line, found {text!r}")
    return name


def _directories(storage: dict[str, Any], data: _UserData) -> None:
    for where, entry in _entries(storage, "directories", _DIR_KEYS):
        path = _path(entry, where)
        _root_owned(entry, where)
        if path in data.directories:
            raise CloudInitError(where, f"{path} is declared twice")
        data.directories[path] = _mode(entry, where, DEFAULT_DIR_MODE)


def _links(storage: dict[str, Any], data: _UserData) -> None:
    for where, entry in _entries(storage, "links", _LINK_KEYS):
        path = _path(entry, where)
        _root_owned(entry, where)
        target = entry.get("target")
        if not isinstance(target, str) or not target:
            raise CloudInitError(f"{where}.target", f"{path}: expected the link's target")
        if entry.get("hard") is True:
            raise CloudInitError(f"{where}.hard", f"{path}: hard links are not carried")
        if path == COMPOSE_SYSEXT_LINK and target.startswith(COMPOSE_SYSEXT_DIR):
            continue  # the base image ships compose
        if path == LOCALTIME and target.startswith(ZONEINFO):
            zone = target[len(ZONEINFO) :]
            if not _TIMEZONE.fullmatch(zone) or ".." in zone.split("/"):
                raise CloudInitError(f"{where}.target", f"{target!r} names no timezone")
            data.timezone = zone
            continue
        raise CloudInitError(
            where,
            f"{path} -> {target}: links are not carried, except {LOCALTIME} into "
            f"{ZONEINFO} and the docker-compose sysext's",
        )


def _units(systemd: dict[str, Any], data: _UserData) -> None:
    _check_keys(systemd, {"units"}, "systemd")
    for where, unit in _entries(systemd, "units", _UNIT_KEYS):
        name = unit.get("name")
        if not isinstance(name, str) or not _UNIT_NAME.fullmatch(name):
            raise CloudInitError(f"{where}.name", f"found {name!r}; expected a systemd unit name")
        if name in data.units:
            raise CloudInitError(f"{where}.name", f"{name} is declared twice")
        enabled, mask = unit.get("enabled"), unit.get("mask")
        for key, value in (("enabled", enabled), ("mask", mask)):
            if value is not None and not isinstance(value, bool):
                raise CloudInitError(f"{where}.{key}", f"expected true or false, found {value!r}")
        contents = unit.get("contents")
        if mask and (contents is not None or enabled):
            raise CloudInitError(
                where, f"{name} is masked, so it can have neither contents nor enabled: true"
            )
        if contents is not None:
            data.add_file(
                where,
                f"{UNIT_DIR}/{name}",
                _unit_file(f"{UNIT_DIR}/{name}", contents, f"{where}.contents"),
            )
        for dwhere, dropin in _entries(unit, "dropins", _DROPIN_KEYS, prefix=where):
            dname = dropin.get("name")
            if not isinstance(dname, str) or not _DROPIN_NAME.fullmatch(dname):
                raise CloudInitError(
                    f"{dwhere}.name", f"found {dname!r}; expected a name ending .conf"
                )
            path = f"{UNIT_DIR}/{name}.d/{dname}"
            data.add_file(
                dwhere, path, _unit_file(path, dropin.get("contents") or "", f"{dwhere}.contents")
            )
        data.units[name] = (enabled, bool(mask))
    if PREPARE_UNIT in data.units and not data.units[PREPARE_UNIT][1]:
        path = f"{UNIT_DIR}/{PREPARE_UNIT}.d/{RETRY_DROPIN}"
        data.add_file("systemd.units", path, _file_entry(path, RETRY_CONF, UNIT_MODE))


def _unit_file(path: str, contents: object, where: str) -> dict[str, str]:
    if not isinstance(contents, str):
        raise CloudInitError(where, f"expected a string, found {_kind(contents)}")
    return _file_entry(path, contents.encode(), UNIT_MODE)


def _file_entry(path: str, data: bytes, mode: int) -> dict[str, str]:
    return {
        "path": path,
        "content": base64.b64encode(data).decode("ascii"),
        "encoding": "b64",
        "owner": OWNER,
        "permissions": _octal(mode),
    }


def _document(data: _UserData) -> dict[str, object]:
    """The cloud-config mapping (yamlout sorts its keys)."""
    commands = ["systemctl daemon-reload"]
    for name, (enabled, mask) in sorted(data.units.items()):
        if mask:
            commands.append(_command("systemctl", "mask", name))
        elif enabled is True:
            commands.append(_command("systemctl", "enable", name))
        elif enabled is False:
            commands.append(_command("systemctl", "disable", name))
    if PREPARE_UNIT in data.units and not data.units[PREPARE_UNIT][1]:
        commands.append(_command("systemctl", "start", "--no-block", PREPARE_UNIT))
    document: dict[str, object] = {
        "disable_root": True,
        "ssh_pwauth": False,
        "users": {},  # no users, not even cloud-init's default one (see the docstring)
        "runcmd": commands,
        "write_files": [data.files[path] for path in sorted(data.files)],
    }
    if data.directories:
        document["bootcmd"] = [
            _command("install", "-d", "-m", _octal(mode), path)
            for path, mode in sorted(data.directories.items())
        ]
    if data.hostname is not None:
        document["hostname"] = data.hostname
        document["preserve_hostname"] = False
    if data.timezone is not None:
        document["timezone"] = data.timezone
    return document


def _command(*argv: str) -> str:
    return " ".join(shlex.quote(arg) for arg in argv)


# --- reading the JSON -----------------------------------------------------------------


def _entries(
    parent: dict[str, Any], key: str, allowed: set[str], *, prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, entry) for each object in the list `parent[key]`, keys checked."""
    base = f"{prefix}.{key}" if prefix else _section_name(key)
    value = parent.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        raise CloudInitError(base, f"expected a list, found {_kind(value)}")
    for index, item in enumerate(value):
        where = f"{base}[{index}]"
        entry = _object(item, where)
        _check_keys(entry, allowed, where)
        yield where, entry


def _section_name(key: str) -> str:
    return f"systemd.{key}" if key == "units" else f"storage.{key}"


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CloudInitError(where, f"expected an object, found {_kind(value)}")
    return value


def _check_keys(value: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(k for k in value if k not in allowed and not _empty(value[k]))
    if unknown:
        place = f"{where}." if where else ""
        raise CloudInitError(
            f"{place}{unknown[0]}", "an unknown key; not carried into cloud-init user-data"
        )


def _path(entry: dict[str, Any], where: str) -> str:
    path = entry.get("path")
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or posixpath.normpath(path) != path
        or path == "/"
        or "\0" in path
        or "\n" in path
    ):
        raise CloudInitError(f"{where}.path", f"found {path!r}; expected an absolute, normal path")
    return path


def _mode(entry: dict[str, Any], where: str, default: int) -> int:
    mode = entry.get("mode")
    if mode is None:
        return default
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise CloudInitError(f"{where}.mode", f"found {mode!r}; expected a mode from 0 to 0o7777")
    return mode


def _root_owned(entry: dict[str, Any], where: str) -> None:
    for key in ("user", "group"):
        owner = _object(entry.get(key), f"{where}.{key}")
        _check_keys(owner, {"id", "name"}, f"{where}.{key}")
        if owner.get("id") not in (None, 0) or owner.get("name") not in (None, "root"):
            raise CloudInitError(f"{where}.{key}", "owners other than root are not carried")


def _octal(mode: int) -> str:
    return f"0{mode:03o}"


def _empty(value: object) -> bool:
    """None, an empty list or object, or an object of empty values: absent, as in Ignition."""
    if value is None:
        return True
    if isinstance(value, list):
        return not value
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return False


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
