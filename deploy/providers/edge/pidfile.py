"""Long-running children of the local provider, found again through their pid files.

The edge Caddy and the switchboard outlive the process that started them (a
restarted service finds them running). A pid file alone is not proof: a
pid is recycled after a reboot or a crash, so a process counts as ours only
while its command line names `marker` (a path of its state directory), and
`stop` never signals anything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


def live_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in `pidfile` while that process lives and its command line names `marker`.

    A dead child of ours is reaped on the way, so it does not linger as a zombie.
    """
    try:
        pid = int(pidfile.read_text().strip())
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if marker.encode() in cmdline and state != "Z" else None


def stop(pidfile: Path, marker: str, timeout: float = 15) -> None:
    """Stop the process of `pidfile` (SIGTERM, SIGKILL after `timeout`) and remove the file."""
    pid = live_pid(pidfile, marker)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while live_pid(pidfile, marker) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if live_pid(pidfile, marker) is not None:
            log.warning("%s (pid %s) ignored SIGTERM; killing it", pidfile.name, pid)
            os.kill(pid, signal.SIGKILL)
            while live_pid(pidfile, marker) is not None:
                time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
