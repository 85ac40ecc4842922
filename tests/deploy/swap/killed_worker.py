"""A worker that SIGKILLs itself in the middle of a swap (after the detach, before the attach).

Run as `python -m tests.deploy.swap.killed_worker STATE_DIR EDGE ADMIN DB IMAGE PROJECT STEP`.
"""

from __future__ import annotations

import os
import signal
import sys

from deploy.providers.local.provider import LocalProvider
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.fixtures import make_ignition, make_spec


def main(
    state_dir: str, edge: str, admin: str, db: str, image: str, project: str, step: str
) -> None:
    provider = LocalProvider(
        state_dir, ex_edge_listen=(edge,), ex_edge_admin=admin, ex_stop_timeout=5
    )

    def on_step(_swap_id: int, name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    engine = SwapEngine(provider, SqlJournal(db), on_step=on_step, ready_timeout=60)
    engine.deploy(make_spec(project, make_ignition(image, "v2"), "d" * 40))


if __name__ == "__main__":
    main(*sys.argv[1:])
