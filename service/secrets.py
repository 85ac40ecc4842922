"""The secret store: `secret:NAME` in a config resolves to the file NAME in a directory.

One file per secret (like Docker and systemd credentials), readable by the
service only. Values are read when a resolved render needs them and never
cached, logged or stored in the history; only names are listed, for the
validation that every reference exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from schemas.errors import SecretNotFound

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class DirectorySecretStore:
    """Secrets as files in `directory`; a missing directory is an empty store."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def names(self) -> list[str]:
        """The names of every stored secret (never their values)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_file())

    def get(self, name: str) -> str | None:
        """The value of `name` without its trailing newline, or None when it is not stored."""
        if not _NAME.fullmatch(name) or name.startswith("."):
            return None
        path = self.directory / name
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8").rstrip("\n")

    def require(self, name: str) -> str:
        """The value of `name`; `SecretNotFound` (naming only the secret) when it is missing."""
        value = self.get(name)
        if value is None:
            raise SecretNotFound(name)
        return value
