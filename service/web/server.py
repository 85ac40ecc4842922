"""`swapyard serve` under Granian: one worker process with HTTP threads and the work threads.

Granian parses HTTP in Rust and calls the WSGI app from a pool of Python
threads; against gunicorn's pure-Python gthread worker that doubled the
webhook acknowledgements per second on the same machine (bench/webhooks.py).

The app is built in the main process (so a bad config fails before anything
listens); Granian forks one worker process, which drops the database
connections inherited through fork, starts the work threads, serves, and
stops the work threads when Granian shuts it down (SIGTERM or SIGINT to the
main process). A worker that dies is respawned; a worker whose main process
dies (SIGKILL) is stopped by the kernel, as gunicorn's workers stop
themselves, so no orphan keeps serving and running jobs. Killing the whole
process group loses nothing: acknowledged events are in the database and
leases expire, the schedule's too (service.worker.leader): another `serve` or
`worker` on the database takes the schedule over within a lease length.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from typing import Any

from flask import Flask
from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels
from granian.log import logger as granian_logger

from service.store.db import get_db
from service.worker.backups import get_backups, schedule_line
from service.worker.threads import get_worker


class _ThreadCountIsIntended(logging.Filter):
    """Drop Granian's warning that more threads than cores is a lot: ours mostly wait
    (SQLite commits, forge and git I/O), and more threads make bigger inbox batches."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads" not in record.getMessage()


def _end_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux)."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(app: Flask, host: str, port: int, threads: int, background: bool = True) -> None:
    """Serve `app`; with `background`, the worker threads run in the same process."""
    main_pid = os.getpid()

    def load(_target: str) -> Flask:  # in the forked worker process
        _end_with_parent(main_pid)
        get_db(app).engine.dispose(close=False)  # connections from before fork stay unused
        backups = get_backups(app)
        if background:
            get_worker(app).start(role="serve")
        elif backups is not None:
            backups.start(role=None)  # read and store jobs; `serve` or `worker` runs them
        print(f"swapyard: {schedule_line(backups)}", flush=True)
        return app

    def serve_then_stop(*args: Any, **kwargs: Any) -> None:
        try:
            Granian._spawn_wsgi_worker(*args, **kwargs)
        finally:
            backups = get_backups(app)
            if background:
                get_worker(app).stop()
            elif backups is not None:
                backups.shutdown()

    granian_logger.addFilter(_ThreadCountIsIntended())
    server = Granian(
        "swapyard",  # a name only: `load` hands Granian the app itself
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=1,  # the work threads and the SQLite writer live in one process
        blocking_threads=threads,
        backlog=2048,
        respawn_failed_workers=True,
        workers_kill_timeout=10,
        log_level=LogLevels.warning,
        log_access=False,
    )
    server.serve(spawn_target=serve_then_stop, target_loader=load)
