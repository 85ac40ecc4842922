"""The memory provider: the provider contract, plus its fault injection and its front proxy.

No Docker: the instances' front proxies are loopback HTTP servers of the driver itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from deploy.providers.base import Provider, Route, VolumeHandle
from deploy.providers.memory.provider import MemoryApp, MemoryProvider
from deploy.providers.registry import get_driver
from deploy.providers.types import (
    SNAPSHOT_DIR,
    IgnitionError,
    InstanceNotFound,
    ProviderError,
    VolumeInUse,
)
from tests.deploy.providers.contract import MIB, ProviderContract

APPS = (MemoryApp("web", ("web.test",)), MemoryApp("notes", ("notes.test",), writer=True))
IGNITION = json.dumps({"ignition": {"version": "3.4.0"}}).encode()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[MemoryProvider]:
    p = MemoryProvider(tmp_path / "state", ex_apps=APPS)
    try:
        yield p
    finally:
        p.ex_close()


@pytest.fixture
def ignition_v1() -> bytes:
    return IGNITION


class TestMemoryProvider(ProviderContract):
    """The contract every driver honours, here without Docker."""


def get(p: Provider, iid: str, host: str, path: str = "/") -> requests.Response:
    inst = p.get_instance(iid)
    assert inst is not None and inst.endpoint is not None
    url = f"http://{inst.endpoint[0]}:{inst.endpoint[1]}{path}"
    return requests.get(url, headers={"Host": host}, timeout=5)


def test_registered_as_memory() -> None:
    assert get_driver("memory") is MemoryProvider


def test_without_a_state_dir_it_cleans_up_after_itself() -> None:
    p = MemoryProvider()
    vol = p.create_volume("v", MIB, "data")
    inst = p.create_instance("p", "n", IGNITION, shortid="a")
    p.attach_volume(vol, inst)
    (p.volume_path(vol) / "f").write_text("x")
    root = p.state_dir
    p.ex_close()
    assert not root.exists()


def test_the_next_call_fails_once_then_works(provider: MemoryProvider) -> None:
    provider.ex_fail("create_volume")
    with pytest.raises(ProviderError, match="create_volume: injected failure"):
        provider.create_volume("v", MIB, "data")
    assert provider.get_volume("v") is None  # nothing happened
    assert provider.create_volume("v", MIB, "data").id == "v"


def test_a_given_error_is_raised_as_many_times_as_asked(provider: MemoryProvider) -> None:
    class Killed(BaseException):
        pass

    provider.ex_fail("routes", Killed("gone"), times=2)
    for _ in range(2):
        with pytest.raises(Killed):
            provider.routes()
    assert provider.routes() == []


def test_only_contract_methods_can_fail(provider: MemoryProvider) -> None:
    for name in ("instance_id", "ex_fail", "_volume", "nothing"):
        with pytest.raises(ProviderError, match="not a provider method that can fail"):
            provider.ex_fail(name)
    with pytest.raises(ProviderError, match="not a provider method"):
        provider.ex_pause("answer")


def test_a_paused_call_waits_for_its_release(provider: MemoryProvider) -> None:
    point = provider.ex_pause("create_volume")
    done: list[str] = []
    worker = threading.Thread(
        target=lambda: done.append(provider.create_volume("v", MIB, "data").id)
    )
    worker.start()
    point.wait_reached(5)
    assert done == [] and provider.get_volume("v") is None
    point.release()
    worker.join(5)
    assert done == ["v"]


def test_calls_are_recorded_with_their_subject(provider: MemoryProvider) -> None:
    inst = provider.create_instance("p", "n", IGNITION, shortid="a")
    provider.set_maintenance(inst, True)
    provider.get_volume("nope")
    assert provider.ex_calls == [
        ("create_instance", "p"),
        ("set_maintenance", inst.id),
        ("get_volume", "nope"),
    ]


def test_app_status_applies_to_new_instances_or_to_one(provider: MemoryProvider) -> None:
    old = provider.wait_until_ready(provider.create_instance("p", "n", IGNITION, shortid="a"))
    provider.ex_set_status("web", 500)
    new = provider.wait_until_ready(provider.create_instance("p", "n", IGNITION, shortid="b"))
    assert get(provider, old.id, "web.test").status_code == 200
    assert get(provider, new.id, "web.test").status_code == 500
    provider.ex_set_status("web", 404, instance_id=old.id)
    assert get(provider, old.id, "web.test").status_code == 404
    assert get(provider, old.id, "nowhere.test").status_code == 404  # no such app
    with pytest.raises(ProviderError, match="not an HTTP status"):
        provider.ex_set_status("web", 42)
    with pytest.raises(
        ProviderError, match=r"'wbe' is not declared in ex_apps \(declared: web, notes\)"
    ):
        provider.ex_set_status("wbe", 500)
    with pytest.raises(InstanceNotFound):
        provider.ex_set_status("web", 200, instance_id="sy-gone")


def test_without_declared_apps_every_host_is_an_app(tmp_path: Path) -> None:
    p = MemoryProvider(tmp_path)
    try:
        inst = p.create_instance("p", "n", IGNITION, shortid="a")
        resp = get(p, inst.id, "blog.example.org:8080")
        assert resp.status_code == 200 and resp.text == f"blog.example.org on {inst.id}\n"
    finally:
        p.ex_close()


@pytest.mark.parametrize(
    ("ignition", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "only Ignition 3.x"),
        (json.dumps({"ignition": {"version": "2.3.0"}}).encode(), "'2.3.0'"),
        (json.dumps({"ignition": "3.4.0"}).encode(), "only Ignition 3.x"),
    ],
)
def test_a_config_that_is_not_ignition_3_is_refused(
    provider: MemoryProvider, ignition: bytes, message: str
) -> None:
    with pytest.raises(IgnitionError, match=message):
        provider.create_instance("p", "n", ignition, shortid="a")
    assert provider.list_instances() == []


def test_methods_on_a_gone_instance_say_so(provider: MemoryProvider) -> None:
    inst = provider.create_instance("p", "n", IGNITION, shortid="a")
    provider.destroy_instance(inst)
    provider.destroy_instance(inst)  # idempotent
    for call in (
        lambda: provider.wait_until_ready(inst),
        lambda: provider.set_maintenance(inst, True),
        lambda: provider.stop_writers(inst),
        lambda: provider.set_health_pass(inst, None),
    ):
        with pytest.raises(InstanceNotFound, match=inst.id):
            call()
    with pytest.raises(ProviderError, match="volume gone does not exist"):
        provider.detach_volume(VolumeHandle("gone", "d", MIB))


def test_detach_stops_the_writers_and_an_instance_holds_one_volume(
    provider: MemoryProvider,
) -> None:
    inst = provider.create_instance("p", "n", IGNITION, shortid="a")
    one, two = provider.create_volume("one", MIB, "d"), provider.create_volume("two", MIB, "d")
    provider.attach_volume(one, inst)
    provider.start_writers(inst)
    assert get(provider, inst.id, "notes.test", "/add?x").status_code == 200
    with pytest.raises(VolumeInUse, match="already has volume one"):
        provider.attach_volume(two, inst)
    provider.detach_volume(one)
    assert get(provider, inst.id, "notes.test").status_code == 502
    with pytest.raises(ProviderError, match="no volume attached"):
        provider.start_writers(inst)


def test_host_mount_exchange_and_snapshots(provider: MemoryProvider) -> None:
    live, staged = provider.create_volume("live", MIB, "d"), provider.create_volume("new", MIB, "d")
    inst = provider.create_instance("p", "n", IGNITION, shortid="a")
    provider.attach_volume(live, inst)
    (provider.volume_path(live) / "f").write_text("old")
    assert provider.can_snapshot(live)
    snap = provider.snapshot_volume(live, "s1")
    assert (snap / "f").read_text() == "old" and not (snap / SNAPSHOT_DIR).exists()
    provider.delete_volume_snapshot(live, "s1")
    provider.delete_volume_snapshot(live, "s1")  # a no-op when gone
    assert not snap.exists()
    with pytest.raises(VolumeInUse):
        provider.mount_on_host(live)
    with pytest.raises(VolumeInUse):
        provider.exchange_volume_data(live, staged)
    (provider.mount_on_host(staged) / "f").write_text("restored")
    with pytest.raises(VolumeInUse):
        provider.attach_volume(staged, inst)
    provider.detach_volume(staged)
    provider.detach_volume(live)
    with pytest.raises(ProviderError, match="attached nowhere"):
        provider.volume_path(live)
    provider.exchange_volume_data(live, staged)
    provider.attach_volume(live, inst)
    assert (provider.volume_path(live) / "f").read_text() == "restored"
    provider.destroy_volume(live)
    assert provider.get_volume("live") is None and [v.id for v in provider.list_volumes()] == [
        "new"
    ]


def test_a_reboot_loses_attachments_writers_and_routes(provider: MemoryProvider) -> None:
    inst = provider.wait_until_ready(provider.create_instance("p", "n", IGNITION, shortid="a"))
    vol = provider.create_volume("v", MIB, "d")
    provider.attach_volume(vol, inst)
    provider.start_writers(inst)
    assert inst.endpoint is not None
    provider.switch_traffic(Route(("web.test",), inst.id, inst.endpoint))
    provider.ex_reboot()
    assert provider.get_volume("v").attached_to is None  # type: ignore[union-attr]
    assert provider.routes() == []
    assert get(provider, inst.id, "notes.test").status_code == 502
    with pytest.raises(ProviderError, match="names no domain"):
        provider.switch_traffic(Route((), inst.id, inst.endpoint))
