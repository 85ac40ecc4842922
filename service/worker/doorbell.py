"""A doorbell for the worker's idle threads (see `Doorbell`)."""

from __future__ import annotations

import threading


class Doorbell:
    """Wakes this process's idle threads as soon as work is stored here.

    Idle threads still poll (work stored by another process rings no bell
    here), but a delivery or a finished deployment in this process is picked up
    at once instead of after up to POLL_SECONDS. A ring between a thread's
    look for work and its wait is not lost: the thread waits only if nothing
    rang since it looked.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rings = 0

    @property
    def rings(self) -> int:
        return self._rings

    def ring(self) -> None:
        with self._cond:
            self._rings += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._rings != seen, timeout)
