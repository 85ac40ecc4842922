"""The one error tree of swapyard.

Library code raises these; only the CLI and the HTTP layer turn them into exit
codes and responses. Each message says what is wrong, where, and what is
expected, so it can be shown to a user as it is.
"""

from __future__ import annotations

from dataclasses import dataclass


class SwapyardError(Exception):
    """Root of every error swapyard raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about one place in a config file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(SwapyardError, ValueError):
    """A config repository that does not validate; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class RenderError(SwapyardError):
    """A validated config that still cannot be rendered (e.g. a secret that cannot be resolved)."""


class SecretNotFound(RenderError, KeyError):
    """A `secret:NAME` reference the secret store does not hold."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"secret {name!r} is not in the secret store")

    def __str__(self) -> str:
        return str(self.args[0])
