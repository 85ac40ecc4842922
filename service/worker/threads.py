"""The worker: the threads that run this process's parts of the work, and their lifecycle.

`Worker` runs, each in threads of its own: the event dispatcher and the
deployment runner (`WORKERS` threads, each doing one unit of work per round:
an event first, else a deployment), the status sender (service.forge.statuses)
and, every `RECONCILE_SECONDS`, the missed-push check. `start` first has the
deployer recover what a dead worker left and shows it on the deployments it
interrupted, then starts the backup schedule's lifecycle
(service.worker.backups); `stop` ends them all, letting a running backup
finish.

An idle thread polls every POLL_SECONDS; the doorbell (service.worker.doorbell)
wakes it at once when this process stores work (a delivery, a finished
deployment). The status sender takes at most one idle round per
`STATUS_GAP`: under a flood of deliveries each rings the bell, and a round
per ring starved the web threads of the GIL.

The parts are built and handed in by service.worker.build; the worker only
drives them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flask import Flask

from service.forge.statuses import StatusSender
from service.settings import Settings
from service.worker.backups import Backups
from service.worker.deployer import Deployer
from service.worker.deployments import DeploymentRunner
from service.worker.doorbell import Doorbell
from service.worker.events import EventDispatcher
from service.worker.missedpushes import MissedPushCheck

log = logging.getLogger(__name__)
STATUS_GAP = 0.1  # seconds: the status sender's shortest pause after an idle round
KEY = "swapyard.worker"


class Worker:
    """Drives the parts in threads: started by `swapyard serve` and `swapyard worker`."""

    def __init__(
        self,
        settings: Settings,
        events: EventDispatcher,
        deployments: DeploymentRunner,
        sender: StatusSender,
        missed_pushes: MissedPushCheck,
        doorbell: Doorbell,
        deployer: Deployer | None = None,
        backups: Backups | None = None,
    ):
        self.settings = settings
        self.events = events
        self.deployments = deployments
        self.sender = sender
        self.missed_pushes = missed_pushes
        self.doorbell = doorbell
        self.deployer = deployer
        self.backups = backups
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        """New work was stored in this process: idle threads look now."""
        self.doorbell.ring()

    def run_once(self) -> bool:
        """Do one unit of work (an event, else a deployment); False when idle."""
        event = self.events.claim()
        if event is not None:
            self.events.dispatch(event)
            self.wake()  # its deployments and statuses, for the idle threads
            return True
        dep = self.deployments.claim()
        if dep is not None:
            self.deployments.run(dep)
            self.wake()
            return True
        return False

    def start(
        self, threads: int | None = None, statuses: bool = True, role: str | None = "serve"
    ) -> None:
        """Start `threads` worker threads (default WORKERS), the status sender and backups.

        With a `role` (`serve`, `worker`) this process stands for the schedule
        lease: whichever process holds it runs the backup jobs of every process
        on the database (service.worker.backups); with None it only stores jobs.
        """
        count = self.settings.workers if threads is None else threads
        if self.deployer is not None and count > 0:
            self.deployments.show_recovered(self.deployer.recover())
        if self.backups is not None:
            self.backups.start(role)
        self._stop.clear()
        for n in range(count):
            self._spawn(f"swapyard-worker-{n}", self.run_once)
        if statuses:
            self._spawn("swapyard-statuses", lambda: self.sender.send_due() > 0, gap=STATUS_GAP)
        every = self.settings.reconcile_seconds
        if every > 0:
            self._spawn("swapyard-missed-pushes", self._check_missed, every, gap=None)

    def _check_missed(self) -> bool:
        self.missed_pushes.check()
        return False  # then wait a full RECONCILE_SECONDS

    def _loop(self, step: Callable[[], bool], idle: float, gap: float | None) -> None:
        """Run `step` until stopped; after an idle round wait `idle` seconds, or less when
        the doorbell rings, but (`gap`) not less than that (None: the bell is ignored)."""
        while not self._stop.is_set():
            seen = self.doorbell.rings
            try:
                busy = step()
            except Exception:  # keep the thread alive; the lease frees the work
                log.exception("worker step failed")
                busy = False
            if busy or self._stop.is_set():
                continue
            if gap is None:
                self._stop.wait(idle)
            elif not (gap and self._stop.wait(gap)):
                self.doorbell.wait(seen, max(idle - gap, 0.0))

    def _spawn(
        self,
        name: str,
        step: Callable[[], bool],
        idle: float | None = None,
        gap: float | None = 0.0,
    ) -> None:
        idle = self.settings.poll_seconds if idle is None else idle
        thread = threading.Thread(target=self._loop, args=(step, idle, gap), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.doorbell.ring()
        if self.backups is not None and self.backups.scheduler.scheduler.running:
            self.backups.shutdown()  # running backups finish, then the lease is given up
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()


def get_worker(app: Flask) -> Worker:
    """The app's worker, built (not started) by the app factory."""
    worker: Worker = app.extensions[KEY]
    return worker
