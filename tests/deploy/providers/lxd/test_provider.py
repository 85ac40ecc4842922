"""The lxd provider against the real LXD daemon: the provider contract, then what only LXD does.

Every instance here is a real system container booted from swapyard's base
image with its own systemd and Docker engine; the test image is copied into
it from the control host's engine through the instance's Docker API (this
machine has no registry). The inside is read through LXD's API, never by
logging in (there is nothing to log in with).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from deploy.providers.base import Route
from deploy.providers.types import ProviderError, VolumeInUse
from tests.deploy.fixtures import make_ignition
from tests.deploy.providers.contract import MIB, ProviderContract

pytestmark = [pytest.mark.docker, pytest.mark.lxd]

HOMES = "/" + "home"  # users' homes inside the instance


@pytest.fixture
def provider(lxd_provider: Any) -> Iterator[Any]:
    yield lxd_provider


@pytest.fixture
def ignition_v1(test_image: str) -> bytes:
    return make_ignition(test_image, "v1", units=True)


class TestLxdProvider(ProviderContract):
    def test_the_instance_is_a_container_with_its_own_address(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "a1")
        raw = provider._raw(inst.id)
        assert raw["type"] == "container" and raw["status"] == "Running"
        assert raw["project"] == provider.sites.lxd_project(project)
        assert inst.endpoint == (inst.extra["address"], 80)
        code, out, _ = provider.ex_execute(inst, ["ip", "-4", "-o", "addr", "show", "eth0"])
        assert code == 0 and f"{inst.extra['address']}/24" in out
        code, out, _ = provider.ex_execute(inst, ["systemctl", "is-active", "docker.service"])
        assert out.strip() == "active"

    def test_no_login_inside_and_the_engine_wants_our_certificate(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "n1")
        # no password or key for any user, no SSH server
        _, shadow, _ = provider.ex_execute(inst, ["cat", "/etc/shadow"])
        for line in shadow.splitlines():
            user, password = line.split(":")[:2]
            assert password in ("*", "!", "!*", "") or password.startswith("!"), user
            assert password != "", f"{user} has an empty password"
        code, keys, _ = provider.ex_execute(
            inst,
            ["sh", "-c", f"cat ~root/.ssh/* {HOMES}/*/.ssh/* /etc/ssh/authorized_keys* 2>&-"],
        )
        assert keys.strip() == "", f"SSH keys inside: {keys}"
        _, passwd, _ = provider.ex_execute(inst, ["getent", "passwd"])
        shells = [line for line in passwd.splitlines() if not line.endswith(("nologin", "false"))]
        assert [line.split(":")[0] for line in shells] in (["root"], ["root", "sync"])
        code, _, _ = provider.ex_execute(inst, ["sh", "-c", "command -v sshd"])
        assert code != 0, "an SSH server is installed"
        code, listening, _ = provider.ex_execute(inst, ["ss", "-Hltn"])
        assert ":22 " not in listening
        # the Docker API over TLS refuses a client without swapyard's certificate
        address = inst.extra["address"]
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{address}:2376/version", verify=False, timeout=5)
        plain = requests.get(f"http://{address}:2376/version", timeout=5)
        assert plain.status_code == 400 and "ApiVersion" not in plain.text
        # ... and answers swapyard's own client
        engine = provider._engine(inst)
        engine.wait_until_reachable(10)

    def test_a_volume_serves_one_project(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-other", 64 * MIB, "d", project=project + "x")
        inst = provider.create_instance(project, "demo", ignition_v1, shortid="p1")
        with pytest.raises(ProviderError, match="serves one project"):
            provider.attach_volume(vol, inst)
        provider.destroy_volume(vol)
        provider.destroy_instance(inst)
        provider.ex_remove_project(project + "x")

    def test_a_volume_needs_its_project(self, provider: Any, project: str) -> None:
        with pytest.raises(ProviderError, match="needs to know the project"):
            provider.create_volume(f"sy-{project}-x", 64 * MIB, "d")

    def test_attach_refused_while_another_instance_holds_it(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "d", project=project)
        one = provider.create_instance(project, "demo", ignition_v1, shortid="r1")
        two = provider.create_instance(project, "demo", ignition_v1, shortid="r2")
        assert one.extra["address"] != two.extra["address"]
        provider.attach_volume(vol, one)
        with pytest.raises(VolumeInUse):
            provider.attach_volume(vol, two)
        raw = provider._raw(two.id)
        assert "swapyard-data" not in raw["devices"]

    def test_edge_routes_to_the_instance(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "e1")
        provider.switch_traffic(Route(("web.test",), inst.id, inst.endpoint))
        edge = provider.edge.listen[0]
        resp = requests.get(f"http://{edge}/", headers={"Host": "web.test"}, timeout=5)
        assert resp.status_code == 200 and resp.text == "web v1\n"

    def test_snapshot_is_read_on_this_host(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "d", project=project)
        inst = self.ready(provider, project, ignition_v1, "s2")
        provider.attach_volume(vol, inst)
        provider.start_writers(inst)
        assert self.get(inst, "notes.test", "/cgi-bin/add?snap").status_code == 200
        assert provider.can_snapshot(vol)
        path = provider.snapshot_volume(vol, "b1")
        assert (path / "notes" / "notes.txt").read_text() == "snap\n"
        assert self.get(inst, "notes.test", "/cgi-bin/add?later").status_code == 200
        assert (path / "notes" / "notes.txt").read_text() == "snap\n"
        assert "later" in (provider.volume_path(vol) / "notes" / "notes.txt").read_text()
        provider.delete_volume_snapshot(vol, "b1")
        assert not path.exists()

    def test_limits_from_the_config_become_lxd_limits(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        config = json.loads(ignition_v1)
        limits = json.dumps({"cpus": 1, "memory_bytes": 512 << 20}).encode()
        config["storage"]["files"].append(
            {
                "path": "/opt/swapyard/limits.json",
                "mode": 0o644,
                "contents": {"source": "data:;base64," + base64.b64encode(limits).decode()},
            }
        )
        inst = self.ready(provider, project, json.dumps(config).encode(), "l1")
        raw = provider._raw(inst.id)
        assert raw["config"]["limits.cpu"] == "1"
        assert raw["config"]["limits.memory"] == str(512 << 20)
        _, cpus, _ = provider.ex_execute(inst, ["nproc"])
        assert cpus.strip() == "1"

    def test_caddy_sees_the_volume_once_it_is_attached(
        self, provider: Any, project: str, ignition_v1: bytes
    ) -> None:
        """Caddy starts before the volume comes (its certificates live there): it is restarted
        once after the first attach, and not again when writers restart later."""
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "d", project=project)
        marker = provider.mount_on_host(vol) / ".caddy" / "marker"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("certificates\n")
        inst = self.ready(provider, project, ignition_v1, "c1")
        engine = provider._engine(inst)

        def caddy() -> Any:
            (c,) = [c for c in engine.client.containers.list() if "caddy" in c.name]
            return c

        assert caddy().exec_run(["cat", "/data/marker"]).exit_code != 0
        provider.attach_volume(vol, inst)
        provider.start_writers(inst)
        seen = caddy().exec_run(["cat", "/data/marker"])
        assert seen.exit_code == 0 and seen.output == b"certificates\n"
        started = caddy().attrs["State"]["StartedAt"]
        provider.stop_writers(inst)
        provider.start_writers(inst)
        assert caddy().attrs["State"]["StartedAt"] == started

    def test_a_repository_on_this_host_is_out_of_reach_of_restores_on_the_instance(
        self, provider: Any, project: str, tmp_path: Any
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-r", 64 * MIB, "d", project=project)
        repo = str(tmp_path / "repo")
        with (
            pytest.raises(ProviderError, match=r"directory on this host.*s3:"),
            provider.volume_runner(vol, restore=True, repository=repo),
        ):
            pass
        with (
            pytest.raises(ProviderError, match="attached nowhere"),
            provider.volume_runner(vol, repository=f"local:{repo}"),
        ):
            pass
