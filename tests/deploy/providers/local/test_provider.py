"""The local provider: the provider contract plus what only the local driver does."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from docker import errors as docker_errors

from deploy.providers.base import Provider, Route
from deploy.providers.commands import run
from deploy.providers.edge.proxy import Edge
from deploy.providers.local.ignition import decode_data_url, materialize
from deploy.providers.local.provider import LocalProvider
from deploy.providers.local.volumes import LoopVolumes, filesystem_type, loop_devices_of
from deploy.providers.registry import DRIVERS, get_driver, set_driver
from deploy.providers.types import IgnitionError, ProviderError, UnknownProvider
from tests.deploy.conftest import cleanup, free_port
from tests.deploy.providers.contract import MIB, ProviderContract

pytestmark = pytest.mark.docker


class TestLocalProvider(ProviderContract):
    def test_edge_routes_to_the_instance(
        self, provider: LocalProvider, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "e1")
        assert inst.endpoint is not None
        provider.switch_traffic(Route(("web.test", "notes.test"), inst.id, inst.endpoint))
        edge = provider.edge.listen[0]
        resp = requests.get(f"http://{edge}/", headers={"Host": "web.test"}, timeout=5)
        assert resp.status_code == 200 and resp.text == "web v1\n"
        other = requests.get(f"http://{edge}/", headers={"Host": "nope.test"}, timeout=5)
        assert other.status_code == 404

    def test_ignition_is_materialized_into_the_state_dir(
        self, provider: LocalProvider, project: str, ignition_v1: bytes
    ) -> None:
        inst = provider.create_instance(project, "demo", ignition_v1, shortid="i1")
        root = Path(inst.extra["root"])
        assert (root / "compose.yaml").exists()
        assert (root / "files/notes/cgi-bin/add").stat().st_mode & 0o777 == 0o755
        assert (root / "secrets").stat().st_mode & 0o777 == 0o700
        assert inst.id == f"sy-{project}-demo-i1"

    def test_loop_device_is_freed_on_detach(
        self, provider: LocalProvider, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "sydata")
        inst = provider.create_instance(project, "demo", ignition_v1, shortid="l1")
        attached = provider.attach_volume(vol, inst)
        image = Path(attached.extra["image"])
        assert len(loop_devices_of(image)) == 1
        provider.detach_volume(vol)
        assert loop_devices_of(image) == []

    def test_writers_cannot_start_without_the_volume(
        self, provider: LocalProvider, project: str, ignition_v1: bytes
    ) -> None:
        """As after a reboot: Docker restarting a writer before the volume is back."""
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "sydata")
        inst = provider.create_instance(project, "demo", ignition_v1, shortid="r1")
        data = Path(inst.extra["data"])
        (notes,) = [c for c in provider.projects.containers(inst.id) if c.name.endswith("-notes-1")]
        with pytest.raises(docker_errors.APIError):
            notes.start()
        with pytest.raises(PermissionError):
            (data / "stray").mkdir()
        provider.attach_volume(vol, inst)
        provider.start_writers(inst)
        provider.stop_writers(inst)
        provider.detach_volume(vol)
        assert list(data.iterdir()) == []  # nothing was ever written to the wrong disk
        provider.destroy_instance(inst)
        assert not data.parent.exists()


def test_never_formats_an_existing_filesystem(tmp_path: Path) -> None:
    volumes = LoopVolumes(tmp_path, use_loop=True)
    image = volumes.image("v")
    with open(image, "wb") as f:
        f.truncate(32 * MIB)
    run(["mkfs.ext4", "-q", "-L", "original", str(image)])
    volumes.create("v", 32 * MIB, "other", "ext4")
    out = run(["blkid", "-o", "value", "-s", "LABEL", str(image)]).stdout.strip()
    assert out == "original"
    assert filesystem_type(image) == "ext4"


def test_directory_fallback_without_loop_devices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volumes = LoopVolumes(tmp_path, use_loop=False)
    assert "loop devices are not available" in caplog.text
    volumes.create("v", MIB, "data", "ext4")
    point = tmp_path / "instances" / "x" / "data"
    point.parent.mkdir(parents=True)
    info = volumes.attach("v", point)
    assert info.mountpoints == (point,)
    (point / "f").write_text("kept")
    volumes.detach("v")
    assert not point.exists()
    assert (volumes.image("v") / "f").read_text() == "kept"


def test_data_urls() -> None:
    assert decode_data_url("data:,hello%20world") == b"hello world"
    assert decode_data_url("data:text/plain;base64," + base64.b64encode(b"x").decode()) == b"x"
    with pytest.raises(IgnitionError, match="only data: URLs"):
        decode_data_url("https://example.org/config")


def test_materialize_gzip_links_and_refusals(tmp_path: Path) -> None:
    data = base64.b64encode(gzip.compress(b"zipped")).decode()
    config = {
        "ignition": {"version": "3.4.0"},
        "storage": {
            "files": [
                {
                    "path": "/opt/a",
                    "contents": {"source": f"data:;base64,{data}", "compression": "gzip"},
                }
            ],
            "links": [{"path": "/opt/b", "target": "/opt/a"}],
        },
    }
    materialize(json.dumps(config).encode(), tmp_path)
    assert (tmp_path / "opt/a").read_bytes() == b"zipped"
    assert (tmp_path / "opt/b").is_symlink()
    assert (tmp_path / "opt/b").resolve() == (tmp_path / "opt/a").resolve()  # not the host's
    entry = config["storage"]["files"][0]
    entry["contents"]["verification"] = {"hash": "sha256-" + hashlib.sha256(b"zipped").hexdigest()}
    entry["user"] = {"id": 1000}
    materialize(config, tmp_path)
    assert (tmp_path / "opt/a").stat().st_uid == 1000
    entry["contents"]["verification"] = {"hash": "sha256-" + "0" * 64}
    with pytest.raises(IgnitionError, match="do not match"):
        materialize(config, tmp_path)
    remote = {
        "path": "/opt/extensions/compose.raw",
        "contents": {"source": "https://extensions.flatcar.org/compose.raw"},
    }
    materialize({"ignition": {"version": "3.4.0"}, "storage": {"files": [remote]}}, tmp_path)
    assert not (tmp_path / "opt/extensions").exists()  # OS-level: the local engine stands in
    remote["path"] = "/opt/swapyard/compose.yaml"
    with pytest.raises(IgnitionError, match="only data: URLs"):
        materialize({"ignition": {"version": "3.4.0"}, "storage": {"files": [remote]}}, tmp_path)
    with pytest.raises(IgnitionError, match=r"3\.x"):
        materialize({"ignition": {"version": "2.3.0"}}, tmp_path)
    with pytest.raises(IgnitionError, match="absolute"):
        materialize(
            {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": "/opt/../../etc/x"}]},
            },
            tmp_path,
        )


def test_registry_and_unimplemented_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("deploy.providers.registry.DRIVERS", dict(DRIVERS))
    assert get_driver("local") is LocalProvider
    with pytest.raises(UnknownProvider, match="set_driver"):
        get_driver("nowhere")
    set_driver("plain", "deploy.providers.base", "Provider")
    with pytest.raises(NotImplementedError, match="attach_volume not implemented"):
        get_driver("plain")().attach_volume(None, None)  # type: ignore[arg-type]
    assert issubclass(get_driver("plain"), Provider)


class TestLocalProviderDirectoryMode(ProviderContract):
    """The same contract where loop devices are missing: volumes are directories."""

    @pytest.fixture
    def provider(self, tmp_path: Path, docker_client: Any, project: str) -> Iterator[LocalProvider]:
        p = LocalProvider(
            tmp_path / "state",
            ex_edge_listen=(f"127.0.0.1:{free_port()}",),
            ex_edge_admin=f"127.0.0.1:{free_port()}",
            ex_stop_timeout=5,
            ex_use_loop=False,
        )
        try:
            yield p
        finally:
            cleanup(p, docker_client, project)


def test_edge_never_takes_over_a_foreign_caddy(tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    config = tmp_path / "foreign.json"
    config.write_text(json.dumps({"admin": {"listen": admin}}))
    foreign = subprocess.Popen(
        ["caddy", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(requests.RequestException):
                requests.get(f"http://{admin}/config/", timeout=1)
                break
            time.sleep(0.05)
        edge = Edge(tmp_path, (f"127.0.0.1:{free_port()}",), admin)
        with pytest.raises(ProviderError, match="another program answers"):
            edge.switch(Route(("a.test",), "x", ("127.0.0.1", 9)))
        assert requests.get(f"http://{admin}/config/", timeout=1).json() == {
            "admin": {"listen": admin}
        }
    finally:
        foreign.terminate()
        foreign.wait(10)
