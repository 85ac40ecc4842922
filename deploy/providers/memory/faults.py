"""Faults a test injects into the memory provider: a call that fails, a call held at its start.

Every contract method of the driver is wrapped by `faultable`, which records
the call, waits at a pause point set for it, then raises a failure queued for
it before the method runs, so an injected failure changes nothing. The
failure may be any exception: a `ProviderError` (the default) drives the
engine's rollback, a `BaseException` stands for the worker being killed
inside the call and leaves the journal for `recover()`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from deploy.providers.types import ProviderError

P = ParamSpec("P")
R = TypeVar("R")

PAUSE_LIMIT = 30.0  # seconds a paused call waits for its release before it fails
FAULTABLE: set[str] = set()  # the methods `faultable` wraps, filled as the driver is defined


class PausePoint:
    """A call held at its start: `reached` is set when it arrives, `release()` lets it go."""

    def __init__(self, method: str):
        self.method = method
        self.reached = threading.Event()
        self._released = threading.Event()

    def wait_reached(self, timeout: float = PAUSE_LIMIT) -> None:
        """Block until the paused call has arrived; `ProviderError` after `timeout` s."""
        if not self.reached.wait(timeout):
            raise ProviderError(f"no call of {self.method} arrived within {timeout:g} s")

    def release(self) -> None:
        """Let the paused call run."""
        self._released.set()

    def hold(self) -> None:
        """Called by the paused call: wait for `release()`, at most `PAUSE_LIMIT` s."""
        self.reached.set()
        if not self._released.wait(PAUSE_LIMIT):
            raise ProviderError(f"{self.method} was paused and never released")


class Faults:
    """The failures and pause points queued per method, and the calls made so far."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (method, the id or name it acted on)
        self._lock = threading.Lock()
        self._failures: dict[str, list[BaseException]] = {}
        self._pauses: dict[str, PausePoint] = {}

    def fail(self, method: str, error: BaseException | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `method` raise `error` (default a `ProviderError`)."""
        _check(method)
        failure = error or ProviderError(f"{method}: injected failure (memory provider)")
        with self._lock:
            self._failures.setdefault(method, []).extend([failure] * times)

    def pause(self, method: str) -> PausePoint:
        """Hold the next call of `method` at its start until the returned point is released."""
        _check(method)
        point = PausePoint(method)
        with self._lock:
            self._pauses[method] = point
        return point

    def enter(self, method: str, args: tuple[Any, ...]) -> None:
        """Record a call of `method`, hold it at its pause point, raise its queued failure."""
        subject = args[0] if args else ""
        with self._lock:
            self.calls.append((method, str(getattr(subject, "id", subject))))
            point = self._pauses.pop(method, None)
        if point is not None:
            point.hold()
        with self._lock:
            queued = self._failures.get(method)
            failure = queued.pop(0) if queued else None
        if failure is not None:
            raise failure


def _check(method: str) -> None:
    if method not in FAULTABLE:
        known = ", ".join(sorted(FAULTABLE))
        raise ProviderError(f"{method!r} is not a provider method that can fail (one of {known})")


class HasFaults(Protocol):
    faults: Faults


S = TypeVar("S", bound=HasFaults)


def faultable(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Wrap a driver method: `self.faults.enter` runs before it."""
    FAULTABLE.add(method.__name__)

    @functools.wraps(method)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """(Replaced by the wrapped method's docstring.)"""
        self.faults.enter(method.__name__, args)
        return method(self, *args, **kwargs)

    return call
