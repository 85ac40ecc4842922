"""The provider contract: every provider's test class subclasses `ProviderContract`.

A subclass supplies the fixtures `provider` (a fresh driver), `project` (a
unique project name), `ignition_v1` (an Ignition config of an instance whose
front proxy serves `web.test` at `/`, shows the maintenance page with its
health pass, and has a writer service). The memory driver takes its apps from
its own `ex_apps` instead, so there `ignition_v1` need only be Ignition 3.x.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests

from deploy.providers.base import InstanceHandle, Provider, Route
from deploy.providers.types import InstanceState, ProviderError, VolumeInUse, VolumeState
from renderers.layout import HEALTH_PASS_HEADER, HEALTH_PASS_PREFIX

MIB = 1 << 20


class ProviderContract:
    """Behaviour every provider driver must show; run against a real backend."""

    def ready(
        self, provider: Provider, project: str, ignition: bytes, shortid: str
    ) -> InstanceHandle:
        inst = provider.create_instance(project, "demo", ignition, shortid=shortid)
        return provider.wait_until_ready(inst, timeout=60)

    def get(self, inst: InstanceHandle, host: str = "web.test", path: str = "/") -> Any:
        assert inst.endpoint is not None
        host_ip, port = inst.endpoint
        return requests.get(f"http://{host_ip}:{port}{path}", headers={"Host": host}, timeout=5)

    def test_create_is_idempotent_and_listed(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        first = provider.create_instance(project, "demo", ignition_v1, shortid="a1")
        again = provider.create_instance(project, "demo", ignition_v1, shortid="a1")
        assert first.id == again.id == provider.instance_id(project, "demo", "a1")
        assert first.id in {i.id for i in provider.list_instances()}
        ready = provider.wait_until_ready(first, timeout=60)
        assert ready.state == InstanceState.RUNNING
        assert ready.endpoint is not None
        assert self.get(ready).status_code == 200

    def test_maintenance_toggles_503_with_retry_after(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "m1")
        provider.set_maintenance(inst, True)
        resp = self.get(inst)
        assert resp.status_code == 503
        assert resp.headers.get("Retry-After")
        provider.set_maintenance(inst, False)
        assert self.get(inst).status_code == 200

    def test_a_health_pass_gets_through_the_maintenance_page_and_nothing_else(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "h1")
        token, other = secrets.token_hex(16), secrets.token_hex(16)
        provider.set_maintenance(inst, True)
        provider.set_health_pass(inst, token)
        try:
            assert self.pass_get(inst, token).status_code == 200
            for header in (other, "", "../on", f"x/../../{HEALTH_PASS_PREFIX}{token}", token + "/"):
                assert self.pass_get(inst, header).status_code == 503, header
            assert self.get(inst).status_code == 503
        finally:
            provider.set_health_pass(inst, None)
        assert self.pass_get(inst, token).status_code == 503  # withdrawn
        provider.set_maintenance(inst, False)
        assert self.get(inst).status_code == 200

    def pass_get(self, inst: InstanceHandle, token: str) -> Any:
        assert inst.endpoint is not None
        host_ip, port = inst.endpoint
        headers = {"Host": "web.test", HEALTH_PASS_HEADER: token}
        return requests.get(f"http://{host_ip}:{port}/", headers=headers, timeout=5)

    def test_volume_is_formatted_once_and_keeps_data(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "sydata", project=project)
        assert vol.state == VolumeState.AVAILABLE
        inst = self.ready(provider, project, ignition_v1, "v1")
        provider.attach_volume(vol, inst)
        provider.start_writers(inst)
        assert self.get(inst, "notes.test", "/cgi-bin/add?kept").status_code == 200
        provider.stop_writers(inst)
        provider.detach_volume(vol)
        again = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "sydata", project=project)
        assert again.id == vol.id
        provider.attach_volume(again, inst)
        provider.start_writers(inst)
        assert "kept" in self.get(inst, "notes.test", "/cgi-bin/list").text

    def test_volume_is_never_attached_twice(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "sydata", project=project)
        one = self.ready(provider, project, ignition_v1, "one")
        two = provider.create_instance(project, "demo", ignition_v1, shortid="two")
        attached = provider.attach_volume(vol, one)
        assert attached.attached_to == one.id
        assert provider.attach_volume(vol, one).attached_to == one.id  # idempotent
        with pytest.raises(VolumeInUse):
            provider.attach_volume(vol, two)
        detached = provider.detach_volume(vol)
        assert detached.state == VolumeState.AVAILABLE and detached.attached_to is None
        assert provider.detach_volume(vol).attached_to is None  # idempotent
        assert provider.attach_volume(vol, two).attached_to == two.id

    def test_writers_wait_for_the_volume(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "w1")
        with pytest.raises(ProviderError):
            provider.start_writers(inst)
        assert self.get(inst, "notes.test").status_code == 502  # writer not running

    def test_destroy_keeps_the_volume(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        vol = provider.create_volume(f"sy-{project}-demo", 64 * MIB, "sydata", project=project)
        inst = self.ready(provider, project, ignition_v1, "d1")
        provider.attach_volume(vol, inst)
        provider.destroy_instance(inst)
        assert provider.get_instance(inst.id) is None
        after = provider.get_volume(vol.id)
        assert after is not None and after.attached_to is None

    def test_switch_traffic_routes_domains(
        self, provider: Provider, project: str, ignition_v1: bytes
    ) -> None:
        inst = self.ready(provider, project, ignition_v1, "s1")
        assert inst.endpoint is not None
        provider.switch_traffic(Route(("web.test",), inst.id, inst.endpoint))
        assert [r.instance_id for r in provider.routes()] == [inst.id]
        provider.remove_traffic(("web.test",))
        assert provider.routes() == []
