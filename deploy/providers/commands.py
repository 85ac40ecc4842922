"""The one seam for external programs: every subprocess of the local provider goes here.

`run` is for commands that finish (docker-compose, losetup, mount, mkfs,
blkid); `spawn` for the long-running ones (the edge Caddy and its switchboard).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.providers.types import CommandFailed, ProviderError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion and capture its output as text.

    `env` is added to the current environment. A non-zero exit raises
    `CommandFailed` (with stderr) unless `check` is false; a missing program
    or a timeout raises `ProviderError`.
    """
    args = [str(a) for a in argv]
    full_env = {**os.environ, **env} if env else None
    log.debug("run: %s", " ".join(args))
    try:
        proc = subprocess.run(
            args, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
    except FileNotFoundError as exc:
        raise ProviderError(f"{args[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"`{' '.join(args[:3])}` did not finish in {timeout} s") from exc
    if check and proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, proc.stderr or proc.stdout)
    return proc


def spawn(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running program in its own session, output appended to `log_path`.

    `env` is added to the current environment.
    """
    args = [str(a) for a in argv]
    full_env = {**os.environ, **env} if env else None
    log.debug("spawn: %s", " ".join(args))
    with open(log_path, "ab") as out:
        try:
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=full_env,
            )
        except FileNotFoundError as exc:
            raise ProviderError(f"{args[0]} is not installed or not on PATH") from exc
