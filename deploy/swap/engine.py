"""The swap state machine: replace a live instance by a new one, moving its data volume across.

Steps of a `replace`, each journaled (started/done/failed) before the next:

    create_new -> wait_ready -> maintenance_old -> stop_writers_old -> detach_old
    -> attach_new -> start_writers_new -> health_check -> [update_dns] -> switch_traffic
    -> destroy_old

A `create` (first deploy) is `create_volume` then the same steps without the
old instance. A failure before `switch_traffic` rolls back (writers of the
new instance stopped, volume back on the old one, then
`deploy.maintenance.end_maintenance` of the old one: its writers started,
its apps checked behind the page, maintenance off; new instance destroyed)
and the result says why. Old apps that do not answer keep the page on and
raise a `maintenance` alert (`alerts`, when the engine is given one). After
the switch there is no way back: a failing `destroy_old` leaves a note.

Steps run through `deploy.steps.runner.Steps`, the runner backups use too.
Every step is idempotent against reality (providers read attachments from
the system, never from the journal), so `recover()` after a crash simply
rolls back each swap that had not switched yet and completes the others.
Only `Exception`s trigger a rollback; a `BaseException` (the worker being
killed, a test's simulated crash) leaves the journal for `recover()`.

A deploy that finds the instance's lock held by a backup or a restore
waits for it, up to `lock_wait` seconds (`deploy.swap.lockwait`).

DNS (`deploy.dns`), for a spec with a `dns` part: `update_dns` points the
domains at the new instance's addresses (`Provider.dns_addresses`) in one
change, after the health check and before the switch, so a failed update
(a wrong key, a server that does not answer) rolls back like any step,
with nothing moved. What the names held before is journaled before the
change is sent, and a rollback puts it back (`rollback:restore_dns`).
When the records moved, the old instance keeps serving until the old
records' TTL has passed since the change, then it is destroyed; a
recovery after a crash waits for what is left of it. A deploy whose
config is unchanged but whose records are not what they should be (a
`dns-only` plan: zone, TTL or addresses changed, records drifted) is a
journaled `dns` run of that one step, without a swap; a destroy removes
the instance's records first (`remove_dns`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deploy.dns.base import DnsDriver, DnsError, in_zone
from deploy.dns.records import (
    DnsSpec,
    RecordChange,
    before_from_json,
    plan_records,
    restore_changes,
)
from deploy.live import LiveRecord
from deploy.maintenance import Alerts, MaintenanceKept, end_maintenance
from deploy.providers.base import InstanceHandle, Provider, Route, VolumeHandle
from deploy.providers.types import InstanceState, ProviderError
from deploy.spec import AppCheck, DeploySpec, check_apps
from deploy.steps.runner import StepHook, Steps, describe
from deploy.swap.journal import Journal, SwapRecord, SwapState
from deploy.swap.lockwait import WaitHook, wait_for_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwapResult:
    """What a deploy, destroy or recovery did: `status` is success/failure/error/noop.

    Its fields carry the names of the deployment row the service stores it in
    (`status`, `action`, `summary`).
    """

    status: str
    action: str  # create | replace | destroy | dns-only | noop
    summary: str
    swap_id: int | None = None
    instance_id: str | None = None


def _endpoint(instance: InstanceHandle) -> tuple[str, int]:
    """Where a ready instance answers; a ready instance without one is the driver's fault."""
    if instance.endpoint is None:
        raise ProviderError(f"instance {instance.id} is ready but has no endpoint")
    return instance.endpoint


class SwapEngine:
    """Runs deploys, swaps and destroys against one provider, journaling every step."""

    def __init__(
        self,
        provider: Provider,
        journal: Journal,
        *,
        ready_timeout: float = 120,
        health_timeout: float = 60,
        health_interval: float = 0.5,
        drain_seconds: float = 1.0,
        lock_wait: float = 0.0,
        lock_poll: float = 1.0,
        on_step: StepHook | None = None,
        new_shortid: Callable[[], str] = lambda: secrets.token_hex(3),
        alerts: Alerts | None = None,
        open_dns: Callable[[DnsSpec], DnsDriver] | None = None,
    ):
        self.provider = provider
        self.journal = journal
        self.ready_timeout = ready_timeout
        self.health_timeout = health_timeout
        self.health_interval = health_interval
        self.drain_seconds = drain_seconds
        self.lock_wait = lock_wait
        self.lock_poll = lock_poll
        self.on_step = on_step
        self.new_shortid = new_shortid
        self.alerts = alerts
        self._open_dns = open_dns

    # -- journaled steps ---------------------------------------------------
    def _steps(self, swap_id: int) -> Steps:
        """The journaled step runner of one swap."""
        return Steps(self.journal, swap_id, self.on_step)

    def _volume(self, volume_id: str) -> VolumeHandle:
        volume = self.provider.get_volume(volume_id)
        if volume is None:
            raise ProviderError(f"volume {volume_id} does not exist on {self.provider.name}")
        return volume

    # -- deploy --------------------------------------------------------------
    def deploy(
        self,
        spec: DeploySpec,
        *,
        on_wait: WaitHook | None = None,
        on_drain: Callable[[str], None] | None = None,
    ) -> SwapResult:
        """Bring `spec` live: `noop`, first deploy (`create`) or swap (`replace`).

        A backup or restore holding the instance's lock is waited for, up to
        `lock_wait` s (`deploy.swap.lockwait`; each attempt reads the live
        record again). `SwapInProgress` when another swap holds the lock
        or the wait times out. `on_drain` hears when the old instance will
        be destroyed, when it is kept for its records' TTL.
        """
        begun = wait_for_lock(
            lambda: self._begin(spec), spec.key, self.lock_wait, self.lock_poll, on_wait
        )
        if isinstance(begun, SwapResult):
            if begun.action == "noop" and spec.dns is not None:
                return self._dns_only(spec, begun)
            return begun
        record = begun
        try:
            self._forward(record, spec)
        except Exception as exc:
            after = self.journal.get(record.id)
            if "switch_traffic" not in after.done:  # past the switch there is no way back
                log.warning("%s: swap %s failed: %s", spec.key, record.id, describe(exc))
                return self._rollback(after, describe(exc))
        after = self.journal.get(record.id)
        return self._complete(after, after.new_instance, on_drain)

    def _begin(self, spec: DeploySpec) -> SwapResult | SwapRecord:
        """A `noop` result, or the journaled swap holding the lock (`SwapInProgress`)."""
        current = self.journal.current(spec.project, spec.name)
        if current is not None and current.digest == spec.digest:
            live = self.provider.get_instance(current.instance_id)
            if live is not None and live.state == InstanceState.RUNNING:
                return SwapResult(
                    "noop", "noop", f"noop: {spec.key} is already at this config", None, live.id
                )
        return self.journal.begin(
            SwapRecord(
                id=0,
                project=spec.project,
                name=spec.name,
                kind="create" if current is None else "replace",
                commit=spec.commit,
                digest=spec.digest,
                volume_id=spec.volume.id,
                old_instance=current.instance_id if current else None,
                old_commit=current.commit if current else None,
                spec=spec.to_json(),
            )
        )

    def _forward(self, record: SwapRecord, spec: DeploySpec) -> InstanceHandle:
        """Every step up to and including the traffic switch."""
        p, sid, vol = self.provider, record.id, spec.volume
        step = self._steps(sid)
        if record.kind == "create":
            step(
                "create_volume",
                lambda: p.create_volume(
                    vol.id, vol.size_bytes, vol.label, vol.filesystem, project=spec.project
                ),
            )
        shortid = self.new_shortid()
        new_id = p.instance_id(spec.project, spec.name, shortid)
        self.journal.update(sid, new_instance=new_id)  # before creating: rollback can find it
        new = step(
            "create_new",
            lambda: p.create_instance(spec.project, spec.name, spec.ignition, shortid=shortid),
        )
        new = step("wait_ready", lambda: p.wait_until_ready(new, self.ready_timeout))
        old = p.get_instance(record.old_instance) if record.old_instance else None
        if old is not None:
            step("maintenance_old", lambda: p.set_maintenance(old, True))
            step("stop_writers_old", lambda: p.stop_writers(old))
        if record.kind == "replace":
            step("detach_old", lambda: p.detach_volume(self._volume(vol.id)))
        step("attach_new", lambda: p.attach_volume(self._volume(vol.id), new))
        step("start_writers_new", lambda: p.start_writers(new))
        step(
            "health_check",
            lambda: check_apps(
                _endpoint(new), spec.apps, self.health_timeout, self.health_interval
            ),
        )
        if spec.dns is not None:
            dns, was = spec.dns, self.journal.current(spec.project, spec.name)
            step(
                "update_dns",
                lambda: self._update_dns(
                    sid, spec.key, dns, spec.all_domains, new, was.domains if was else ()
                ),
                detail=RecordChange.describe,
            )
        domains = spec.all_domains
        live = LiveRecord(
            spec.project, spec.name, new.id, vol.id, spec.commit, spec.digest, domains
        )
        # its end is one transaction with the new live record: no crash falls between them
        step(
            "switch_traffic",
            lambda: p.switch_traffic(Route(domains, new.id, _endpoint(new))),
            done=lambda: self.journal.switched(sid, live),
        )
        return new

    def _complete(
        self,
        record: SwapRecord,
        new_id: str | None,
        on_drain: Callable[[str], None] | None = None,
    ) -> SwapResult:
        """After the switch: destroy the old instance; a failure here is only a note.

        When the records moved, `on_drain` hears when the old instance will be destroyed
        before the wait for the old records' TTL begins.
        """
        note = ""
        old = self.provider.get_instance(record.old_instance) if record.old_instance else None
        served = self._dns_served_until(record)
        if old is not None and on_drain is not None and served > time.time():
            stamp = time.strftime("%H:%M:%S UTC", time.gmtime(served))
            on_drain(
                f"live on {new_id} at {record.commit[:12]}; the old instance {old.id} serves "
                f"until {stamp}, when the old records' TTL has passed, then it is destroyed"
            )
        if old is not None:
            # let requests proxied to the old instance finish, and resolvers that cached its
            # addresses move on (the old records' TTL since the change)
            time.sleep(max(self.drain_seconds, served - time.time()))
            try:
                self._steps(record.id)("destroy_old", lambda: self.provider.destroy_instance(old))
            except Exception as exc:
                note = f"; the old instance {old.id} was not destroyed: {describe(exc)}"
        self.journal.finish(record.id, SwapState.SUCCEEDED, note.lstrip("; ") or None)
        verb = "created" if record.kind == "create" else "swapped"
        if old is not None and served:
            stamp = time.strftime("%H:%M:%S UTC", time.gmtime(served))
            note = f"; the old instance {old.id} served until {stamp} (the old records' TTL){note}"
        note += self._dns_note(record)
        return SwapResult(
            "success",
            record.kind,
            f"success: {record.commit[:12]} {verb}, live on {new_id}{note}",
            record.id,
            new_id,
        )

    # -- rollback ------------------------------------------------------------
    def _rollback(self, record: SwapRecord, reason: str) -> SwapResult:
        """Undo an unfinished swap, step by step, each step checked against reality.

        The reason is journaled first, so a rollback cut short by a crash is
        resumed by `recover()` with its original reason.
        """
        p, sid, errors = self.provider, record.id, []
        step = self._steps(sid)
        self.journal.update(sid, reason=reason)
        new = p.get_instance(record.new_instance) if record.new_instance else None
        old = p.get_instance(record.old_instance) if record.old_instance else None

        def _attempt(name: str, fn: Callable[[], Any]) -> None:
            try:
                step(f"rollback:{name}", fn)
            except Exception as exc:
                errors.append(f"{name}: {describe(exc)}")

        if new is not None:
            _attempt("stop_writers_new", lambda: p.stop_writers(new))
        if "dns_before" in record.spec:
            _attempt("restore_dns", lambda: self._restore_dns(record))
        if new is not None:
            _attempt("restore_traffic", lambda: self._restore_traffic(new, old))
        volume = p.get_volume(record.volume_id)
        if (
            volume is not None
            and volume.attached_to
            and (old is None or volume.attached_to != old.id)
        ):
            _attempt("detach_new", lambda: p.detach_volume(self._volume(record.volume_id)))
        if old is not None and volume is not None:
            _attempt("attach_old", lambda: p.attach_volume(self._volume(record.volume_id), old))
        if old is not None:
            try:
                end_maintenance(
                    p,
                    old,
                    self.journal.live_apps(record.project, record.name),
                    step,
                    alerts=self.alerts,
                    owner=(record.project, record.name),
                    timeout=self.health_timeout,
                    interval=self.health_interval,
                    prefix="rollback:",
                    suffix="_old",
                )
            except MaintenanceKept as exc:
                errors.append(str(exc))
        if new is not None:
            _attempt("destroy_new", lambda: p.destroy_instance(new))
        if record.old_commit:
            full = f"{reason}; rolled back to {record.old_commit[:12]}"
        else:
            full = f"{reason}; nothing was live before, the new instance was removed"
        if errors:
            full += "; rollback incomplete: " + "; ".join(errors)
        self.journal.finish(sid, SwapState.FAILED if errors else SwapState.ROLLED_BACK, full)
        status = "error" if errors else "failure"
        return SwapResult(status, record.kind, f"{status}: {full}", sid, old.id if old else None)

    # -- DNS ------------------------------------------------------------------
    @contextmanager
    def _dns(self, dns: DnsSpec) -> Iterator[DnsDriver]:
        if self._open_dns is None:
            raise DnsError(
                f"dns.provider is {dns.provider}, but this swap engine was given no DNS access"
            )
        driver = self._open_dns(dns)
        try:
            yield driver
        finally:
            driver.close()

    def _update_dns(
        self,
        sid: int,
        key: str,
        dns: DnsSpec,
        domains: tuple[str, ...],
        instance: InstanceHandle,
        remove: tuple[str, ...] = (),
    ) -> RecordChange:
        """Point `domains` at `instance` (and delete `remove`): one change, journaled first."""
        addresses = self.provider.dns_addresses(instance) if domains else ()
        if domains and not addresses:
            raise DnsError(
                f"the {self.provider.name} provider names no address for the DNS records of "
                f"{instance.id}; set EDGE_ADDRESSES to the addresses clients reach this host at"
            )
        with self._dns(dns) as driver:
            change = plan_records(
                driver,
                dns.mark(key),
                {d: addresses for d in domains},
                dns.ttl,
                [d for d in remove if in_zone(d, dns.zone)],
            )
            spec = self.journal.get(sid).spec
            # a retried step keeps the first record of what was there: that is what to restore
            before = {**change.before_json(), **spec.get("dns_before", {})}
            self.journal.update(
                sid, spec={**spec, "dns_before": before, "dns_foreign": list(change.foreign)}
            )
            if change.changes:
                driver.apply(change.changes)
                if change.moved_ttl:
                    spec = self.journal.get(sid).spec
                    moved = {"dns_moved_at": time.time(), "dns_moved_ttl": change.moved_ttl}
                    self.journal.update(sid, spec={**spec, **moved})
        return change

    def _restore_dns(self, record: SwapRecord) -> RecordChange:
        """Put back what the journal says the names held before this swap's change."""
        dns = DnsSpec.from_json(record.spec.get("dns"))
        if dns is None:
            return RecordChange(())
        before = before_from_json(record.spec.get("dns_before", {}))
        with self._dns(dns) as driver:
            mark = dns.mark(f"{record.project}/{record.name}")
            change = restore_changes(driver, mark, before, dns.ttl)
            if change.changes:
                driver.apply(change.changes)
        return change

    @staticmethod
    def _dns_served_until(record: SwapRecord) -> float:
        """When resolvers stop sending clients to the old addresses (0: the records did not
        move)."""
        moved_at, ttl = record.spec.get("dns_moved_at"), record.spec.get("dns_moved_ttl")
        return float(moved_at) + float(ttl) if moved_at and ttl else 0.0

    @staticmethod
    def _dns_note(record: SwapRecord) -> str:
        """The names DNS left alone, for the summary."""
        foreign = record.spec.get("dns_foreign") or []
        return "; DNS left alone: " + "; ".join(foreign) if foreign else ""

    def _dns_only(self, spec: DeploySpec, noop: SwapResult) -> SwapResult:
        """Records that are not what the unchanged instance wants are fixed in a journaled
        `dns` run, without a swap; in order, they leave the `noop` as it is."""
        assert spec.dns is not None and noop.instance_id is not None
        live = self.provider.get_instance(noop.instance_id)
        current = self.journal.current(spec.project, spec.name)
        if live is None or current is None:
            return noop
        addresses = self.provider.dns_addresses(live)
        try:
            with self._dns(spec.dns) as driver:
                change = plan_records(
                    driver,
                    spec.dns.mark(spec.key),
                    {d: addresses for d in spec.all_domains},
                    spec.dns.ttl,
                )
        except Exception as exc:  # nothing was written: the records could not even be read
            reason = f"{describe(exc)}; the records were left as they were"
            return SwapResult("failure", "dns-only", f"failure: {reason}", None, live.id)
        if not change.changes and addresses:
            note = "; DNS left alone: " + "; ".join(change.foreign) if change.foreign else ""
            return SwapResult(noop.status, noop.action, noop.summary + note, None, live.id)
        record = self.journal.begin(
            SwapRecord(
                id=0,
                project=spec.project,
                name=spec.name,
                kind="dns",
                commit=spec.commit,
                digest=spec.digest,
                volume_id=spec.volume.id,
                old_instance=live.id,
                new_instance=live.id,
                old_commit=current.commit,
                spec=spec.to_json(),
            )
        )
        return self._dns_run(record)

    def _dns_run(self, record: SwapRecord) -> SwapResult:
        """The `dns` run: one `update_dns` step for the live instance; on failure what it
        wrote is put back."""
        sid, key = record.id, f"{record.project}/{record.name}"
        dns = DnsSpec.from_json(record.spec.get("dns"))
        live = self.provider.get_instance(record.new_instance) if record.new_instance else None
        try:
            if dns is None or live is None:
                raise DnsError(f"{key}: nothing live to point the records at")
            change = self._steps(sid)(
                "update_dns",
                lambda: self._update_dns(sid, key, dns, tuple(record.spec["domains"]), live),
                detail=RecordChange.describe,
            )
        except Exception as exc:
            reason, after = describe(exc), self.journal.get(sid)
            try:
                if after.spec.get("dns_before"):
                    self._steps(sid)("rollback:restore_dns", lambda: self._restore_dns(after))
            except Exception as again:
                reason += f"; the records could not be put back: {describe(again)}"
                self.journal.finish(sid, SwapState.FAILED, reason)
                return SwapResult(
                    "error", "dns-only", f"error: {reason}", sid, live.id if live else None
                )
            self.journal.finish(sid, SwapState.ROLLED_BACK, reason)
            return SwapResult(
                "failure", "dns-only", f"failure: {reason}", sid, live.id if live else None
            )
        self.journal.finish(sid, SwapState.SUCCEEDED)
        written = len(change.changes)
        return SwapResult(
            "success",
            "dns-only",
            f"success: {record.commit[:12]} DNS records updated ({written} "
            f"name{'s' if written != 1 else ''}), live on {live.id}"
            + self._dns_note(self.journal.get(sid)),
            sid,
            live.id,
        )

    def _complete_later(self, record: SwapRecord, served: float) -> SwapResult:
        """`_complete` in a daemon thread; the result says when the old instance goes."""

        def complete() -> None:
            """Wait out the TTL, destroy the old instance, finish the swap; never raises."""
            try:
                self._complete(record, record.new_instance)
            except Exception:  # the swap stays running: the next start recovers it again
                log.exception("completing swap %s after its drain failed", record.id)

        threading.Thread(target=complete, name=f"swapyard-drain-{record.id}", daemon=True).start()
        stamp = time.strftime("%H:%M:%S UTC", time.gmtime(served))
        return SwapResult(
            "success",
            record.kind,
            f"success: {record.commit[:12]} live on {record.new_instance}; the old instance "
            f"{record.old_instance} serves until {stamp} (the old records' TTL), then it is "
            "destroyed",
            record.id,
            record.new_instance,
        )

    def _restore_traffic(self, new: InstanceHandle, old: InstanceHandle | None) -> None:
        for route in self.provider.routes():
            if route.instance_id != new.id:
                continue
            if old is not None and old.endpoint is not None:
                self.provider.switch_traffic(Route(route.domains, old.id, old.endpoint))
            else:
                self.provider.remove_traffic(route.domains)

    # -- destroy -------------------------------------------------------------
    def destroy(
        self,
        project: str,
        name: str,
        *,
        delete_volume: bool = False,
        commit: str = "",
        dns: DnsSpec | None = None,
    ) -> SwapResult:
        """Take an instance down on explicit request; its volume stays unless `delete_volume`.

        With `dns`, the records of its domains (those carrying its mark) go first.
        """
        current = self.journal.current(project, name)
        if current is None:
            return SwapResult("noop", "destroy", f"noop: {project}/{name} is not deployed")
        record = self.journal.begin(
            SwapRecord(
                id=0,
                project=project,
                name=name,
                kind="destroy",
                commit=commit,
                digest=current.digest,
                volume_id=current.volume_id,
                old_instance=current.instance_id,
                old_commit=current.commit,
                spec={
                    "domains": list(current.domains),
                    "delete_volume": delete_volume,
                    **({"dns": dns.to_json()} if dns is not None else {}),
                },
            )
        )
        return self._destroy(record)

    def _destroy(self, record: SwapRecord) -> SwapResult:
        p, sid = self.provider, record.id
        step = self._steps(sid)
        domains = tuple(record.spec.get("domains", ()))
        dns = DnsSpec.from_json(record.spec.get("dns"))
        old_id = record.old_instance or ""
        try:
            if dns is not None and domains:
                step(
                    "remove_dns",
                    lambda: self._update_dns(
                        sid,
                        f"{record.project}/{record.name}",
                        dns,
                        (),
                        InstanceHandle(old_id, record.project, record.name),
                        remove=domains,
                    ),
                    detail=RecordChange.describe,
                )
            if domains:
                step("remove_traffic", lambda: p.remove_traffic(domains))
            old = p.get_instance(record.old_instance) if record.old_instance else None
            if old is not None:
                step("stop_writers_old", lambda: p.stop_writers(old))
            volume = p.get_volume(record.volume_id)
            if volume is not None:
                step("detach_old", lambda: p.detach_volume(volume))
            if old is not None:
                step("destroy_old", lambda: p.destroy_instance(old))
            if volume is not None and record.spec.get("delete_volume"):
                step("destroy_volume", lambda: p.destroy_volume(volume))
        except Exception as exc:
            self.journal.finish(sid, SwapState.FAILED, describe(exc))
            return SwapResult("error", "destroy", f"error: destroy failed: {describe(exc)}", sid)
        self.journal.clear_current(record.project, record.name)
        self.journal.finish(sid, SwapState.SUCCEEDED)
        return SwapResult(
            "success", "destroy", f"success: {record.project}/{record.name} destroyed", sid
        )

    # -- restart -------------------------------------------------------------
    def recover(self, *, wait_drain: bool = True) -> list[SwapResult]:
        """Finish every swap a dead worker left running: roll back, or complete if switched.

        One swap's failure does not stop the others. A switched swap whose old
        instance must still serve out its records' TTL is waited for here,
        or, with `wait_drain=False` (a service starting up, which must not
        block for minutes), completed by a thread of its own once the TTL
        has passed: its result then says when, and the swap stays running
        (holding the instance's lock) until then.
        """
        results = []
        for record in self.journal.unfinished():
            last = record.done[-1] if record.done else "its first step"
            try:
                if record.kind == "destroy":
                    results.append(self._destroy(record))
                elif record.kind == "dns":
                    results.append(self._dns_run(record))
                elif "switch_traffic" in record.done:
                    served = self._dns_served_until(record)
                    if not wait_drain and served > time.time():
                        results.append(self._complete_later(record, served))
                    else:
                        results.append(self._complete(record, record.new_instance))
                else:
                    reason = record.reason or f"the worker stopped after {last}"
                    results.append(self._rollback(record, reason))
            except Exception as exc:
                log.exception("recovering swap %s failed", record.id)
                results.append(
                    SwapResult("error", record.kind, f"error: {describe(exc)}", record.id)
                )
        return results

    def reconcile(self) -> Reconciliation:
        """After a restart (or a host reboot): put live volumes and routes back, list orphans.

        Call after `recover()`. For each live record the volume is
        re-attached to its instance when it is attached nowhere (writers
        stopped first, started after) and its route is re-applied (which
        also restarts a local edge). Instances no live record or running
        swap references are reported as orphans, never destroyed here.
        """
        p, notes, live = self.provider, [], set()
        for d in self.journal.live_records():
            try:
                notes.extend(self._reconcile_one(d))
                live.add(d.instance_id)
            except Exception as exc:
                notes.append(f"{d.project}/{d.name}: {describe(exc)}")
        busy = {i for r in self.journal.unfinished() for i in (r.old_instance, r.new_instance)}
        orphans = [i.id for i in p.list_instances() if i.id not in live | busy]
        return Reconciliation(tuple(notes), tuple(orphans))

    def _reconcile_one(self, d: LiveRecord) -> list[str]:
        p, key, notes = self.provider, f"{d.project}/{d.name}", []
        inst = p.get_instance(d.instance_id)
        if inst is None:
            return [f"{key}: the live instance {d.instance_id} is gone; push again to recreate it"]
        volume = p.get_volume(d.volume_id)
        if volume is not None and volume.attached_to is None:
            p.stop_writers(inst)
            p.attach_volume(volume, inst)
            p.start_writers(inst)
            notes.append(f"{key}: volume {volume.id} re-attached to {inst.id}")
        elif volume is not None and volume.attached_to != inst.id:
            notes.append(
                f"{key}: volume {volume.id} is attached to {volume.attached_to}, "
                f"not to the live {inst.id}; left alone"
            )
        routed = any(r.instance_id == inst.id and r.endpoint == inst.endpoint for r in p.routes())
        if inst.endpoint is not None:  # re-applied even when unchanged: it restarts an edge
            p.switch_traffic(Route(d.domains, inst.id, inst.endpoint))
            if not routed:
                notes.append(f"{key}: traffic re-pointed to {inst.id} at port {inst.endpoint[1]}")
        return notes


@dataclass(frozen=True)
class Reconciliation:
    """What `SwapEngine.reconcile` repaired (`notes`) and the instances nothing references."""

    notes: tuple[str, ...]
    orphans: tuple[str, ...]


__all__ = ["AppCheck", "DeploySpec", "Reconciliation", "SwapEngine", "SwapResult"]
