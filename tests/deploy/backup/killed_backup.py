"""A process that SIGKILLs itself in the middle of a backup (after a given step).

Run as `python -m tests.deploy.backup.killed_backup STATE_DIR EDGE ADMIN DB PROJECT REPO STEP`
with RESTIC_PASSWORD in the environment.
"""

from __future__ import annotations

import os
import signal
import sys

from deploy.backup.journal import BackupJournal
from deploy.backup.restic import ResticRepo
from deploy.backup.run import BackupRunner
from deploy.providers.local.provider import LocalProvider
from deploy.swap.sqljournal import SqlJournal


def main(
    state_dir: str, edge: str, admin: str, db: str, project: str, repo: str, step: str
) -> None:
    provider = LocalProvider(
        state_dir, ex_edge_listen=(edge,), ex_edge_admin=admin, ex_stop_timeout=5
    )

    def on_step(_run_id: int, name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    swaps = SqlJournal(db)
    runner = BackupRunner(provider, swaps, BackupJournal(swaps.engine), on_step=on_step)
    password = os.environ["RESTIC_PASSWORD"]
    runner.run(project, "demo", ResticRepo(repo, {"RESTIC_PASSWORD": password}))


if __name__ == "__main__":
    main(*sys.argv[1:])
