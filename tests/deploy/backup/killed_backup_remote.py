"""A process that SIGKILLs itself while restic runs on the instance (a snapshot-mode backup).

Run as `python -m tests.deploy.backup.killed_backup_remote DRIVER STATE_DIR OPTIONS DB
PROJECT REPO` with the repository's environment as JSON in SWAPYARD_TEST_RESTIC_ENV.
A thread watches the instance's engine and kills the process once restic's job
container runs: the snapshot's copy is attached then, and the job holds it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

from deploy.backup.journal import BackupJournal
from deploy.backup.restic import ResticRepo
from deploy.backup.run import BackupRunner
from deploy.providers.registry import get_driver
from deploy.swap.sqljournal import SqlJournal


def kill_when_restic_runs(provider: Any, instance_id: str) -> None:
    engine = provider._engine(provider.get_instance(instance_id))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = engine.client.containers.list(filters={"label": "org.swapyard.job=restic"})
        if jobs:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)


def main(driver: str, state_dir: str, options: str, db: str, project: str, repo: str) -> None:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(options).items()}
    provider = get_driver(driver)(state_dir, **kwargs)
    provider.volumes.lxd_dir = None  # as with a remote daemon
    swaps = SqlJournal(db)
    live = swaps.current(project, "demo")
    assert live is not None
    watcher = threading.Thread(
        target=kill_when_restic_runs, args=(provider, live.instance_id), daemon=True
    )

    def on_step(_run_id: int, name: str) -> None:
        if name == "maintenance_off":
            watcher.start()

    runner = BackupRunner(provider, swaps, BackupJournal(swaps.engine), on_step=on_step)
    env = json.loads(os.environ["SWAPYARD_TEST_RESTIC_ENV"])
    runner.run(project, "demo", ResticRepo(repo, env), mode="snapshot")


if __name__ == "__main__":
    main(*sys.argv[1:])
