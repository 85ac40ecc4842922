"""Waiting for an instance's lock while a backup or a restore holds it.

A backup or a restore takes the instance's lock (`deploy.live.LiveStore.lock`) for
seconds to minutes and always gives it back (at the latest `recover()` at
startup does), so a deploy that meets one waits instead of failing. A lock
held by another swap is not waited for: a swap of the same instance only
runs at the same time when its worker died, and only `recover()` ends it.
The lock lives in the database, shared by processes, so waiting is polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from deploy.providers.types import SwapInProgress

T = TypeVar("T")
# (text, waiting): what is waited for, each time that changes; then (text, False) once free
WaitHook = Callable[[str, bool], None]


def holder_text(holder: str) -> str:
    """A lock holder for people: `backup:7` -> `backup 7`."""
    return holder.replace(":", " ", 1) if holder else "another operation"


def _busy_with(holder: str) -> str:
    """`backup:7` -> `a backup`; what the instance is busy with."""
    kind, colon, _ = holder.partition(":")
    return f"a {kind}" if colon and kind else "another operation"


def wait_for_lock(
    attempt: Callable[[], T],
    key: str,
    timeout: float,
    poll: float = 1.0,
    on_wait: WaitHook | None = None,
) -> T:
    """Call `attempt` until it does not raise `SwapInProgress`, for at most `timeout` seconds.

    A `SwapInProgress` raised by a swap (`is_swap`) goes through at once, as
    does any when `timeout` is 0. When the time is up, the `SwapInProgress`
    says `<key>: instance busy with a backup for N s`. `on_wait` is told
    what is waited for, first and whenever the holder changes, and once
    more (`waiting` false) when `attempt` got through after waiting.
    """
    started = time.monotonic()
    waiting_for = ""
    while True:
        try:
            result = attempt()
        except SwapInProgress as exc:
            waited = time.monotonic() - started
            if exc.is_swap or timeout <= 0:  # the journal's own message says it best
                raise
            if waited >= timeout:
                raise SwapInProgress(
                    f"{key}: instance busy with {_busy_with(exc.holder)} for {timeout:g} s "
                    f"({holder_text(exc.holder)} holds its lock); deploy again once it has ended",
                    exc.holder,
                    is_swap=exc.is_swap,
                ) from None
            if holder_text(exc.holder) != waiting_for:
                waiting_for = holder_text(exc.holder)
                if on_wait is not None:
                    text = f"waiting for {waiting_for} of {key} to end (up to {timeout:g} s)"
                    on_wait(text, True)
            time.sleep(max(0.0, min(poll, timeout - waited)))
            continue
        if waiting_for and on_wait is not None:
            on_wait(f"{key}: the lock is free after {time.monotonic() - started:.0f} s", False)
        return result
