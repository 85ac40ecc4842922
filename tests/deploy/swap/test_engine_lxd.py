"""The swap engine on the lxd provider: the local provider's six scenarios on real containers.

First deploy, a swap that keeps the data (the volume attached to exactly
one instance at every step, as LXD reports it), a failed health check that
rolls back, SIGKILL between detach and attach then recovery, a request loop
through the swap with no connection error and no lost write, and a no-op
push that touches nothing; then SIGKILL around the DNS change, with the
records on a real BIND 9, and recovery.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.swap.journal import SwapState
from tests.deploy.dns.servers import (
    DnsTestServer,
    open_test_dns,
    require,
    rfc2136_spec,
    running,
)
from tests.deploy.fixtures import make_ignition, make_spec
from tests.deploy.providers.lxd.fixtures import worker_options
from tests.deploy.swap.harness import Crash, Harness, request_loop

pytestmark = [pytest.mark.docker, pytest.mark.lxd]


class LxdHarness(Harness):
    """The local harness's engine and edge helpers; the invariant read from LXD instead."""

    ready_timeout, health_timeout = 180.0, 30.0

    def __init__(self, provider: Any, db: str, project: str):
        self.holders: list[tuple[str, tuple[str, ...]]] = []
        super().__init__(provider, db, project)

    @property
    def volume_id(self) -> str:
        return f"sy-{self.project}-demo"

    def attached(self) -> tuple[str, ...]:
        """The instances LXD says use the volume, and those whose devices carry it."""
        vol = self.provider.volumes.find(self.volume_id)
        if vol is None:
            return ()
        carriers = {
            i.id for i in self.provider.list_instances() if i.extra.get("data_volume") == vol.name
        }
        return tuple(sorted(set(vol.used_by) | carriers))

    def on_step(self, swap_id: int, step: str) -> None:
        self.steps.append(step)
        holders = self.attached()
        self.holders.append((step, holders))
        assert len(holders) <= 1, f"volume attached to {holders} after {step}"
        if step == self.crash_after:
            raise Crash(step)

    def deploy(self, ignition: bytes, commit: str) -> Any:
        return self.engine.deploy(make_spec(self.project, ignition, commit))


@pytest.fixture
def h(lxd_provider: Any, tmp_path: Path, project: str) -> LxdHarness:
    return LxdHarness(lxd_provider, f"sqlite:///{tmp_path / 'journal.db'}", project)


@pytest.fixture
def v1(test_image: str) -> bytes:
    return make_ignition(test_image, "v1", units=True)


@pytest.fixture
def v2(test_image: str) -> bytes:
    return make_ignition(test_image, "v2", units=True)


def first_deploy(h: LxdHarness, ignition: bytes) -> str:
    out = h.deploy(ignition, "a" * 40)
    assert out.status == "success", out.summary
    assert out.instance_id is not None
    return str(out.instance_id)


def test_first_deploy_serves_apps_and_writes_data(h: LxdHarness, v1: bytes) -> None:
    iid = first_deploy(h, v1)
    assert h.get("web.test").text == "web v1\n"
    assert h.get("notes.test", "/cgi-bin/add?first").status_code == 200
    assert h.get("notes.test", "/cgi-bin/list").text == "first\n"
    assert h.attached() == (iid,)
    current = h.journal.current(h.project, "demo")
    assert current is not None and current.instance_id == iid


def test_swap_keeps_the_data_in_exactly_one_instance(h: LxdHarness, v1: bytes, v2: bytes) -> None:
    old = first_deploy(h, v1)
    h.get("notes.test", "/cgi-bin/add?before-swap")
    out = h.deploy(v2, "b" * 40)
    assert out.status == "success", out.summary
    assert out.instance_id != old
    assert h.get("web.test").text == "web v2\n"
    assert h.get("notes.test", "/cgi-bin/list").text == "before-swap\n"
    assert h.provider.get_instance(old) is None
    assert h.attached() == (out.instance_id,)
    held = dict(h.holders)
    assert held["detach_old"] == () and held["attach_new"] == (out.instance_id,)
    assert h.journal.get(out.swap_id).state == SwapState.SUCCEEDED  # type: ignore[arg-type]


def test_failing_health_check_rolls_back(h: LxdHarness, v1: bytes, test_image: str) -> None:
    old = first_deploy(h, v1)
    h.get("notes.test", "/cgi-bin/add?kept")
    broken = make_ignition(test_image, "v3", healthy=False, units=True)
    out = h.deploy(broken, "c" * 40)
    assert out.status == "failure", out.summary
    assert [i.id for i in h.provider.list_instances()] == [old]
    assert h.attached() == (old,)
    assert h.get("web.test").text == "web v1\n"
    assert h.get("notes.test", "/cgi-bin/list").text == "kept\n"


def test_killed_between_detach_and_attach_then_recovery(
    h: LxdHarness, v1: bytes, test_image: str, tmp_path: Path
) -> None:
    old = first_deploy(h, v1)
    h.get("notes.test", "/cgi-bin/add?precious")
    options = worker_options(h.provider)
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.deploy.swap.killed_worker",
            "lxd",
            str(h.provider.state_dir),
            json.dumps(options),
            h.db,
            test_image,
            h.project,
            "detach_old",
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr
    assert h.attached() == () and h.journal.locks() != []
    (out,) = h.make_engine().recover()
    assert out.status == "failure" and "stopped after detach_old" in out.summary
    assert [i.id for i in h.provider.list_instances()] == [old]
    assert h.attached() == (old,)
    assert h.get("web.test").text == "web v1\n"
    assert h.get("notes.test", "/cgi-bin/list").text == "precious\n"
    assert h.journal.locks() == [] and h.journal.unfinished() == []


def test_request_loop_sees_no_connection_error_and_loses_no_write(
    h: LxdHarness, v1: bytes, v2: bytes
) -> None:
    first_deploy(h, v1)
    stop, log = threading.Event(), []

    thread = threading.Thread(target=request_loop, args=(h, stop, log, 0.02))
    thread.start()
    try:
        time.sleep(0.5)
        out = h.deploy(v2, "e" * 40)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert out.status == "success", out.summary
    errors = [entry for entry in log if not isinstance(entry[1], int)]
    assert errors == []
    assert {code for _, code in log} <= {200, 503}
    acked = {path.split("?")[1] for path, code in log if "add" in path and code == 200}
    stored = set(h.get("notes.test", "/cgi-bin/list").text.split())
    assert acked and acked <= stored


def test_noop_touches_nothing(h: LxdHarness, v1: bytes) -> None:
    iid = first_deploy(h, v1)
    inst = h.provider.get_instance(iid)
    engine = h.provider._engine(inst)
    before = {c.id: c.attrs["State"]["StartedAt"] for c in engine.client.containers.list(all=True)}
    steps = len(h.steps)
    out = h.deploy(v1, "f" * 40)
    assert out.status == "noop" and out.swap_id is None
    after = {c.id: c.attrs["State"]["StartedAt"] for c in engine.client.containers.list(all=True)}
    assert len(before) == 3
    assert after == before and len(h.steps) == steps
    assert [i.id for i in h.provider.list_instances()] == [iid]


@pytest.fixture
def zone_test() -> Iterator[DnsTestServer]:
    """A real BIND 9 serving the zone `test` (the fixture's web.test and notes.test are in it),
    one per test: each test's project marks the names as its own."""
    require("named")
    with running("bind", zone="test") as server:
        yield server


@pytest.mark.parametrize("killed_at", ["update_dns", "switch_traffic"])
def test_killed_around_the_dns_change_then_recovery(
    h: LxdHarness, v1: bytes, test_image: str, zone_test: DnsTestServer, killed_at: str
) -> None:
    """SIGKILL after the records moved (before the switch, or before the old instance's
    destruction), then a restart: the records name the live instance, nothing is left over."""
    dns = rfc2136_spec(zone_test, ttl=3)
    h.engine = h.make_engine(open_dns=open_test_dns)
    first = h.engine.deploy(dataclasses.replace(make_spec(h.project, v1, "a" * 40), dns=dns))
    assert first.status == "success", first.summary
    old = str(first.instance_id)

    def named(instance_id: str) -> list[str]:
        inst = h.provider.get_instance(instance_id)
        assert inst is not None
        return list(h.provider.dns_addresses(inst))

    assert zone_test.query("web.test", "A") == named(old)
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.deploy.swap.killed_worker",
            "lxd",
            str(h.provider.state_dir),
            json.dumps(worker_options(h.provider)),
            h.db,
            test_image,
            h.project,
            killed_at,
            json.dumps(dns.to_json()),
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr
    assert zone_test.query("web.test", "A") != named(old)  # the change was sent before the kill
    (out,) = h.make_engine(open_dns=open_test_dns).recover()
    current = h.journal.current(h.project, "demo")
    assert current is not None
    live = current.instance_id
    if killed_at == "update_dns":
        assert out.status == "failure" and live == old, out.summary
    else:
        assert out.status == "success" and live != old, out.summary
    assert [i.id for i in h.provider.list_instances()] == [live]
    for name in ("web.test", "notes.test"):
        assert zone_test.query(name, "A") == named(live)
        assert zone_test.query(f"_swapyard.{name}", "TXT") == [dns.mark(f"{h.project}/demo")]
    assert h.attached() == (live,)
    assert h.get("web.test").status_code == 200
    assert h.journal.locks() == [] and h.journal.unfinished() == []
