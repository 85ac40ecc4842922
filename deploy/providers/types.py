"""Constants, states and exceptions of the deploy layer (libcloud's `types.py`).

Every exception subclasses `schemas.errors.SwapyardError`, and a builtin where
one fits, so callers can catch either. Messages say what, where and what to do.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.errors import SwapyardError

SNAPSHOT_DIR = ".swapyard-snapshots"  # volume snapshots for backups; never backed up


class InstanceState(StrEnum):
    """Lifecycle of an instance as a provider sees it."""

    PENDING = "pending"  # created, not ready yet
    RUNNING = "running"  # ready: front proxy answers, non-writers up
    STOPPED = "stopped"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


class VolumeState(StrEnum):
    """Whether a volume is attached; a volume is never attached to two instances."""

    AVAILABLE = "available"
    ATTACHED = "attached"
    MISSING = "missing"


class DeployError(SwapyardError):
    """Root of the errors raised by providers and the swap engine."""


class UnknownProvider(DeployError, LookupError):
    """No driver is registered under the requested name."""


class ProviderError(DeployError, RuntimeError):
    """A provider operation failed (a command, an API call)."""


class CommandFailed(ProviderError):
    """An external program exited non-zero; the message carries its stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        super().__init__(f"`{' '.join(argv[:4])}...` exited with {returncode}: " + " | ".join(tail))


class IgnitionError(DeployError, ValueError):
    """An Ignition config this provider cannot materialize."""


class InstanceNotFound(DeployError, LookupError):
    """The instance does not exist (any more) on this provider."""


class InstanceNotReady(DeployError, TimeoutError):
    """The instance did not become ready in time."""


class VolumeInUse(DeployError):
    """The volume is attached elsewhere; detach it first (never attach twice)."""


class HealthCheckFailed(DeployError):
    """An app of the new instance did not answer healthy through its front proxy."""


class SwapInProgress(DeployError):
    """Another swap holds the lock of this instance; wait for it or recover it.

    `holder` names who holds the lock: `swap 12` for a swap, or what a
    `lock` (deploy.live.LiveStore) was taken by (`backup:7`, `restore:8`); empty when unknown.
    """

    def __init__(self, message: str, holder: str = "", *, is_swap: bool = False):
        super().__init__(message)
        self.holder = holder
        self.is_swap = is_swap


class BackupError(DeployError, LookupError):
    """A backup operation asked for something that is not scheduled or not there."""


class EngineUnreachable(ProviderError, ConnectionError):
    """An instance's Docker Engine API does not answer at its address (not up yet, firewalled,
    gone); the message names the instance and the address."""


class EngineRefused(ProviderError, PermissionError):
    """The mutual TLS handshake with an instance's engine failed: a certificate from another
    CA, an expired one, a name that does not match, or an engine not speaking TLS."""


class EngineTimeout(ProviderError, TimeoutError):
    """An instance's engine answered, but what was asked of it did not finish in time (an API
    call, a one-off job)."""
