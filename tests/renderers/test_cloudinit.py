"""cloud-init user-data: what the Ignition config says, carried byte for byte, or refused.

Golden user-data for every example instance lives in
tests/renderers/golden_cloudinit/<project>/<instance>/cloud-init.yaml (the
layout `swapyard render --format cloud-init --out DIR` writes). After a
deliberate change, regenerate and review the diff:

    SWAPYARD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/renderers/test_cloudinit.py
"""

from __future__ import annotations

import base64
import configparser
import copy
import gzip
import hashlib
import json
import os
import shlex
import shutil
import string
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderers import RenderOptions, cloudinit, render_instance
from renderers.cloudinit import CloudInitError, render_cloudinit
from schemas.errors import RenderError, SwapyardError
from schemas.model import Instance
from tests.renderers.helpers import decode_data_url, example_instances, fake_secrets

GOLDEN = Path(__file__).resolve().parent / "golden_cloudinit"
UPDATE = os.environ.get("SWAPYARD_UPDATE_GOLDEN") == "1"
IN_CI = os.environ.get("SWAPYARD_NO_SKIPS") == "1"
UNIT_DIR = "/etc/systemd/system"
SYSEXT_DIR = "/opt/extensions/docker-compose/"
RETRY = f"{UNIT_DIR}/app-prepare.service.d/retry.conf"


def _variants(instance: Instance) -> dict[str, RenderOptions]:
    """The renders a provider may hand over: redacted, resolved, volume attached later."""
    return {
        "redacted": RenderOptions(),
        "resolved": RenderOptions(mode="resolved", secrets=fake_secrets(instance).get),
        "late-volume": RenderOptions(volume_at_boot=False, compose_sysext_sha256="ab" * 32),
    }


def _ignition(instance: Instance, options: RenderOptions | None = None) -> bytes:
    return render_instance(instance, options or RenderOptions())["ignition.json"]


def _golden(instance: Instance) -> Path:
    return GOLDEN / instance.project / instance.name / cloudinit.USER_DATA


def _load(user_data: bytes) -> dict[str, Any]:
    assert user_data.startswith(b"#cloud-config\n")
    document = yaml.safe_load(user_data)
    assert isinstance(document, dict)
    return document


def _written(document: dict[str, Any]) -> dict[str, tuple[bytes, int]]:
    """path -> (bytes, mode) as the write_files entries describe them (decoded here)."""
    out = {}
    for entry in document.get("write_files", []):
        assert entry["owner"] == "root:root"
        raw = base64.b64decode(entry["content"], validate=True)
        if entry["encoding"] == "gz+b64":
            raw = gzip.decompress(raw)
        else:
            assert entry["encoding"] == "b64"
        assert isinstance(entry["permissions"], str)
        assert entry["path"] not in out
        out[entry["path"]] = (raw, int(entry["permissions"], 8))
    return out


def _file_bytes(entry: dict[str, Any]) -> bytes:
    contents = entry.get("contents") or {}
    if contents.get("source") is None:
        return b""
    header, _, payload = contents["source"][len("data:") :].partition(",")
    if header.endswith(";base64"):
        raw = base64.b64decode(payload)
    else:
        raw = urllib.parse.unquote_to_bytes(payload)
    return gzip.decompress(raw) if contents.get("compression") == "gzip" else raw


def assert_carries(ignition: bytes, user_data: bytes) -> None:
    """Every file, directory, link and unit of `ignition` is in `user_data`, and nothing else."""
    config = json.loads(ignition)
    document = _load(user_data)
    written = _written(document)
    expected: dict[str, tuple[bytes, int]] = {}
    storage = config.get("storage", {})
    for entry in storage.get("files", []):
        path = entry["path"]
        if path.startswith(SYSEXT_DIR):
            continue
        data = _file_bytes(entry)
        if path == "/etc/hostname":
            assert document["hostname"] + "\n" == data.decode()
            assert document["preserve_hostname"] is False
            continue
        mode = entry.get("mode")
        expected[path] = (data, 0o644 if mode is None else mode)
    commands = document["runcmd"]
    assert commands[0] == "systemctl daemon-reload"
    units = config.get("systemd", {}).get("units", [])
    for unit in units:
        name = unit["name"]
        if unit.get("contents") is not None:
            expected[f"{UNIT_DIR}/{name}"] = (unit["contents"].encode(), 0o644)
        for dropin in unit.get("dropins") or []:
            path = f"{UNIT_DIR}/{name}.d/{dropin['name']}"
            expected[path] = ((dropin.get("contents") or "").encode(), 0o644)
        if unit.get("mask"):
            assert f"systemctl mask {name}" in commands
        if unit.get("enabled") is True:
            assert f"systemctl enable {name}" in commands
        if unit.get("enabled") is False:
            assert f"systemctl disable {name}" in commands
    names = {u["name"] for u in units if not u.get("mask")}
    if "app-prepare.service" in names:
        expected[RETRY] = (cloudinit.RETRY_CONF, 0o644)
        assert commands[-1] == "systemctl start --no-block app-prepare.service"
    else:
        assert not any(" start " in c for c in commands)
    assert written == expected
    directories = {
        d["path"]: 0o755 if d.get("mode") is None else d["mode"]
        for d in storage.get("directories", [])
    }
    made = {}
    for command in document.get("bootcmd", []):
        install, flag, m, mode, path = shlex.split(command)
        assert (install, flag, m) == ("install", "-d", "-m")
        made[path] = int(mode, 8)
    assert made == directories
    zones = [
        link["target"] for link in storage.get("links", []) if link["path"] == "/etc/localtime"
    ]
    assert document.get("timezone") == (
        zones[0].removeprefix("/usr/share/zoneinfo/") if zones else None
    )
    _assert_no_login(document)


def _assert_no_login(document: dict[str, Any]) -> None:
    assert document["users"] == {}
    assert document["ssh_pwauth"] is False
    assert document["disable_root"] is True
    for key in ("ssh_authorized_keys", "chpasswd", "password", "groups", "ssh_keys", "network"):
        assert key not in document


# --- the example instances --------------------------------------------------------------


def test_golden_user_data_is_current(instance: Instance) -> None:
    golden = _golden(instance)
    user_data = render_cloudinit(_ignition(instance))
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(user_data)
    if not golden.is_file():
        pytest.fail(f"{golden} is missing; run with SWAPYARD_UPDATE_GOLDEN=1 to create it")
    assert golden.read_bytes() == user_data, (
        f"golden user-data of {instance.key} is stale; if the change is intended, "
        "regenerate with SWAPYARD_UPDATE_GOLDEN=1 and review the diff"
    )


def test_no_golden_user_data_without_an_instance(examples: tuple[Instance, ...]) -> None:
    keys = {f"{p.parent.name}/{p.name}" for p in GOLDEN.glob("*/*") if p.is_dir()}
    assert keys == {i.key for i in examples}


@pytest.mark.parametrize("variant", ["redacted", "resolved", "late-volume"])
def test_every_file_and_unit_is_carried(instance: Instance, variant: str) -> None:
    ignition = _ignition(instance, _variants(instance)[variant])
    user_data = render_cloudinit(ignition)
    assert_carries(ignition, user_data)
    assert render_cloudinit(ignition) == user_data  # deterministic


def test_every_artifact_lands_under_opt_swapyard(instance: Instance) -> None:
    options = _variants(instance)["resolved"]
    artifacts = render_instance(instance, options)
    written = _written(_load(render_cloudinit(artifacts["ignition.json"])))
    for name in artifacts.names:
        if name == "ignition.json":
            continue
        if name.startswith("units/"):
            path, mode = f"{UNIT_DIR}/{name.removeprefix('units/')}", 0o644
        else:
            path, mode = f"/opt/swapyard/{name}", 0o600 if name.startswith("secrets/") else 0o644
        assert written[path] == (artifacts[name], mode)
    secrets = [n for n in artifacts.names if n.startswith("secrets/")]
    for name in secrets:  # resolved: the values are in the user-data, as in the Ignition config
        assert b"FAKE-" in written[f"/opt/swapyard/{name}"][0]


def test_flatcar_only_parts_are_dropped(instance: Instance) -> None:
    storage = json.loads(_ignition(instance))["storage"]
    assert storage["filesystems"] and any(SYSEXT_DIR in f["path"] for f in storage["files"])
    user_data = render_cloudinit(_ignition(instance)).decode()
    # Contents are base64, whose alphabet has neither ':' nor '-': these words are not hidden.
    for word in ("extensions", "https:", "by-label", "wipe", "mkfs", "disk_setup", "mounts"):
        assert word not in user_data


def test_app_prepare_retries_without_a_start_limit(examples: tuple[Instance, ...]) -> None:
    written = _written(_load(render_cloudinit(_ignition(examples[0]))))
    parser = configparser.ConfigParser(strict=True)
    parser.read_string(written[RETRY][0].decode())
    assert parser["Service"]["Restart"] == "on-failure"
    assert 0 < int(parser["Service"]["RestartSec"]) <= 30
    assert parser["Unit"]["StartLimitIntervalSec"] == "0"


def test_units_and_the_retry_dropin_pass_systemd_analyze(
    instance: Instance, tmp_path: Path
) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is missing; apt-get install systemd")
    written = _written(_load(render_cloudinit(_ignition(instance))))
    names = []
    for path, (data, _) in written.items():
        if path.startswith(UNIT_DIR + "/"):
            target = tmp_path / path.removeprefix(UNIT_DIR + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if target.parent == tmp_path:
                names.append(target.name)
    result = subprocess.run(
        [tool, "verify", "--man=no", *sorted(names)],
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},  # finds the drop-in directory
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # a bad drop-in key is only a warning


# --- any Ignition config within the carried subset ------------------------------------------

_SEGMENT = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=10)
_PATH = st.lists(_SEGMENT, min_size=1, max_size=3).map(lambda parts: "/srv/" + "/".join(parts))
_MODE = st.none() | st.integers(0, 0o7777)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@st.composite
def _file(draw: st.DrawFn, path: str) -> dict[str, Any]:
    data = draw(st.binary(max_size=300))
    compress = draw(st.booleans())
    payload = gzip.compress(data, mtime=0) if compress else data
    if draw(st.booleans()):
        source = "data:;base64," + base64.b64encode(payload).decode()
    else:
        source = "data:text/plain;charset=utf-8," + urllib.parse.quote_from_bytes(payload)
    contents: dict[str, Any] = {"source": source}
    if compress:
        contents["compression"] = "gzip"
    if draw(st.booleans()):
        contents["verification"] = {"hash": "sha512-" + hashlib.sha512(data).hexdigest()}
    entry: dict[str, Any] = {"path": path, "contents": contents, "overwrite": True}
    mode = draw(_MODE)
    if mode is not None:
        entry["mode"] = mode
    return entry


@st.composite
def _unit(draw: st.DrawFn, name: str) -> dict[str, Any]:
    unit: dict[str, Any] = {"name": name}
    if draw(st.booleans()):
        unit["mask"] = True
        return unit
    unit["contents"] = draw(_TEXT)
    enabled = draw(st.sampled_from([None, True, False]))
    if enabled is not None:
        unit["enabled"] = enabled
    dropins = draw(st.lists(_SEGMENT, max_size=2, unique=True))
    if dropins:
        unit["dropins"] = [{"name": f"{d}.conf", "contents": draw(_TEXT)} for d in dropins]
    return unit


@st.composite
def ignition_configs(draw: st.DrawFn) -> bytes:
    """Ignition 3.x configs made only of what the user-data carries (and what it drops)."""
    paths = draw(st.lists(_PATH, max_size=6, unique=True))
    files = [draw(_file(path)) for path in paths]
    if draw(st.booleans()):
        name = draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True))
        files.append({"path": "/etc/hostname", "contents": {"source": f"data:,{name}%0A"}})
    directories = [
        {"path": p, **({"mode": m} if (m := draw(_MODE)) is not None else {})}
        for p in draw(
            st.lists(_PATH.map(lambda p: p.replace("/srv/", "/var/lib/")), max_size=3, unique=True)
        )
    ]
    links = []
    if draw(st.booleans()):
        zone = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"]))
        links.append({"path": "/etc/localtime", "target": f"/usr/share/zoneinfo/{zone}"})
    names = draw(st.lists(_SEGMENT, max_size=4, unique=True))
    units = [draw(_unit(f"{n}.service")) for n in names]
    if draw(st.booleans()):
        units.append(draw(_unit("app-prepare.service")))
    config = {
        "ignition": {"version": draw(st.sampled_from(["3.0.0", "3.3.0", "3.4.0"]))},
        "storage": {"files": files, "directories": directories, "links": links},
        "systemd": {"units": units},
    }
    return json.dumps(config).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ignition_configs())
def test_any_config_of_the_subset_round_trips(ignition: bytes) -> None:
    user_data = render_cloudinit(ignition)
    assert_carries(ignition, user_data)
    assert render_cloudinit(ignition) == user_data


# --- what is refused ------------------------------------------------------------------------


def _base() -> dict[str, Any]:
    return json.loads(_ignition(example_instances()[0]))


def _set(config: dict[str, Any], dotted: str, value: object) -> None:
    keys = dotted.split(".")
    node: Any = config
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def _first_file(config: dict[str, Any], prefix: str = "/opt/swapyard/") -> int:
    return next(i for i, f in enumerate(config["storage"]["files"]) if f["path"].startswith(prefix))


REMOTE = {"source": "https://example.org/x", "verification": {"hash": "sha256-" + "0" * 64}}
REFUSED: dict[str, tuple[str, object, str]] = {
    # case: (dotted field to set, value, what the message must name)
    "remote source": ("storage.files.F.contents", REMOTE, "storage.files[F].contents.source"),
    "s3 source": ("storage.files.F.contents", {"source": "s3://b/k"}, "a s3: source"),
    "append": ("storage.files.F.append", [{"source": "data:,x"}], "storage.files[F].append"),
    "user": ("storage.files.F.user", {"name": "core"}, "storage.files[F].user"),
    "group id": ("storage.files.F.group", {"id": 1000}, "storage.files[F].group"),
    "bad base64": ("storage.files.F.contents", {"source": "data:;base64,@@"}, "base64"),
    "bad gzip": (
        "storage.files.F.contents",
        {"source": "data:,notgzip", "compression": "gzip"},
        "invalid gzip",
    ),
    "xz": ("storage.files.F.contents", {"source": "data:,x", "compression": "xz"}, "xz"),
    "hash mismatch": (
        "storage.files.F.contents",
        {"source": "data:,x", "verification": {"hash": "sha256-" + "0" * 64}},
        "does not match",
    ),
    "relative path": ("storage.files.F.path", "opt/x", "storage.files[F].path"),
    "dotdot path": ("storage.files.F.path", "/opt/../etc/shadow", "storage.files[F].path"),
    "mode too big": ("storage.files.F.mode", 0o10000, "storage.files[F].mode"),
    "mode bool": ("storage.files.F.mode", True, "storage.files[F].mode"),
    "unknown file key": ("storage.files.F.owner", "x", "storage.files[F].owner"),
    "disks": ("storage.disks", [{"device": "/dev/vdb"}], "storage.disks"),
    "raid": ("storage.raid", [{"name": "md0", "level": "raid1"}], "storage.raid"),
    "luks": ("storage.luks", [{"name": "data", "device": "/dev/vdb"}], "storage.luks"),
    "filesystem mounted": ("storage.filesystems.0.path", "/var", "storage.filesystems[0].path"),
    "filesystem wiped": (
        "storage.filesystems.0.wipeFilesystem",
        True,
        "storage.filesystems[0].wipeFilesystem",
    ),
    "other link": (
        "storage.links",
        [{"path": "/usr/local/bin/x", "target": "/bin/true"}],
        "storage.links[0]",
    ),
    "hard link": (
        "storage.links",
        [{"path": "/etc/localtime", "target": "/usr/share/zoneinfo/UTC", "hard": True}],
        "storage.links[0].hard",
    ),
    "timezone escape": (
        "storage.links",
        [{"path": "/etc/localtime", "target": "/usr/share/zoneinfo/../../etc/passwd"}],
        "storage.links[0].target",
    ),
    "other sysext": (
        "storage.files.F.path",
        "/opt/extensions/kubernetes/k.raw",
        "other sysexts",
    ),
    "merge": ("ignition.config.merge", [{"source": "data:,{}"}], "ignition.config"),
    "replace": ("ignition.config.replace", {"source": "https://x/y.ign"}, "ignition.config"),
    "version 2": ("ignition.version", "2.3.0", "ignition.version"),
    "experimental": ("ignition.version", "3.5.0-experimental", "ignition.version"),
    "users": ("passwd.users", [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 A"]}], "passwd"),
    "kernel": ("kernelArguments.shouldExist", ["quiet"], "kernelArguments"),
    "unknown top": ("extra", {"a": 1}, "extra"),
    "unit name": ("systemd.units.0.name", "../../etc/passwd", "systemd.units[0].name"),
    "dropin name": (
        "systemd.units.0.dropins",
        [{"name": "../x.conf", "contents": ""}],
        "systemd.units[0].dropins[0].name",
    ),
    "masked with contents": ("systemd.units.0.mask", True, "systemd.units[0]"),
    "enabled not bool": ("systemd.units.0.enabled", "yes", "systemd.units[0].enabled"),
    "two hostnames lines": (
        "storage.files.H.contents",
        {"source": "data:,a%0Ab%0A"},
        "one hostname line",
    ),
}


def _refused(case: str) -> dict[str, Any]:
    config = _base()
    dotted, value, _ = REFUSED[case]
    files = config["storage"]["files"]
    hostname = next(i for i, f in enumerate(files) if f["path"] == "/etc/hostname")
    dotted = dotted.replace(".F.", f".{_first_file(config)}.").replace(".H.", f".{hostname}.")
    _set(config, dotted, copy.deepcopy(value))
    return config


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_constructs_name_their_field(case: str) -> None:
    config = _refused(case)
    want = REFUSED[case][2].replace("[F]", f"[{_first_file(_base())}]")
    with pytest.raises(CloudInitError) as caught:
        render_cloudinit(json.dumps(config).encode())
    message = str(caught.value)
    assert message.startswith("ignition.json: "), message
    assert want in message, message
    assert isinstance(caught.value, RenderError) and isinstance(caught.value, SwapyardError)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "expected a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"{}", "ignition.version"),
        (b'{"ignition": {"version": "3.4.0"}, "storage": []}', "storage: expected an object"),
        (b'{"ignition": {"version": "3.4.0"}, "storage": {"files": {}}}', "expected a list"),
    ],
    ids=["utf8", "json", "array", "deep", "empty", "storage-list", "files-object"],
)
def test_input_that_is_no_ignition_config_is_refused(raw: bytes, want: str) -> None:
    with pytest.raises(CloudInitError, match=want):
        render_cloudinit(raw)


def test_a_gzip_bomb_is_refused_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudinit, "MAX_INFLATED_BYTES", 4 << 20)
    bomb = gzip.compress(b"\0" * (8 << 20), mtime=0)
    config = {
        "ignition": {"version": "3.4.0"},
        "storage": {
            "files": [
                {
                    "path": "/srv/bomb",
                    "contents": {
                        "source": "data:;base64," + base64.b64encode(bomb).decode(),
                        "compression": "gzip",
                    },
                }
            ]
        },
    }
    with pytest.raises(CloudInitError, match="inflates past"):
        render_cloudinit(json.dumps(config).encode())


def test_empty_sections_and_fetch_settings_count_as_absent() -> None:
    config = _base()
    config["passwd"] = {"users": []}
    config["storage"]["disks"] = []
    config["ignition"]["timeouts"] = {"httpTotal": 10}
    config["ignition"]["proxy"] = {"httpsProxy": "http://proxy:3128"}
    config["ignition"]["config"] = {"replace": {"source": None}}
    assert render_cloudinit(json.dumps(config).encode()) == render_cloudinit(
        json.dumps(_base()).encode()
    )


# --- cloud-init itself -------------------------------------------------------------------------

# Decodes each write_files entry with cloud-init's own functions (run by cloud-init's Python).
_DECODE = """
import json, sys, base64
from cloudinit import util
from cloudinit.config import cc_write_files as w
out = {}
for name in sys.argv[1:]:
    cfg = util.load_yaml(open(name).read())
    out[name] = {
        f["path"]: [
            base64.b64encode(
                w.extract_contents(
                    f.get("content", ""), w.canonicalize_extraction(f.get("encoding"))
                )
            ).decode(),
            w.decode_perms(f.get("permissions"), w.DEFAULT_PERMS),
            f.get("owner"),
        ]
        for f in cfg["write_files"]
    }
print(json.dumps(out))
"""


def _cloud_init() -> str | None:
    return shutil.which("cloud-init")


def test_cloud_init_accepts_and_decodes_every_golden(tmp_path: Path) -> None:
    """`cloud-init schema` accepts each golden and each variant, and cloud-init's own
    write_files decoding yields the Ignition config's bytes and modes."""
    tool = _cloud_init()
    if tool is None:
        message = "cloud-init is not installed; apt-get install cloud-init (scripts/setup --test)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    cases: dict[Path, bytes] = {}
    for instance in example_instances():
        golden = _golden(instance)
        cases[golden] = _ignition(instance)
        for variant, options in _variants(instance).items():
            path = tmp_path / f"{instance.project}-{instance.name}-{variant}.yaml"
            ignition = _ignition(instance, options)
            path.write_bytes(render_cloudinit(ignition))
            cases[path] = ignition
    for path in cases:
        result = subprocess.run(
            [tool, "schema", "--config-file", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout
    interpreter = Path(tool).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    decoded = subprocess.run(
        [*interpreter, "-c", _DECODE, *map(str, cases)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(decoded.stdout)
    for path, ignition in cases.items():
        by_cloud_init = {
            p: (base64.b64decode(data), mode)
            for p, (data, mode, owner) in result[str(path)].items()
        }
        assert by_cloud_init == _written(_load(path.read_bytes())), path
        files = json.loads(ignition)["storage"]["files"]
        for entry in files:
            if entry["path"].startswith("/opt/swapyard/"):
                assert by_cloud_init[entry["path"]] == (
                    decode_data_url(entry["contents"]["source"]),
                    entry["mode"],
                )
