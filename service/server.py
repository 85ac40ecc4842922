"""`swapyard serve` under gunicorn: one worker process with HTTP threads and the work threads.

The app is built in the arbiter (so a bad config fails before anything
listens); the worker process drops the database connections inherited through
fork and starts the work threads in `post_worker_init`. Killing the whole
process group loses nothing: acknowledged events are in the database and
leases expire.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from .db import get_db
from .worker import get_worker


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def run(app: Flask, host: str, port: int, threads: int, background: bool = True) -> None:
    """Serve `app`; with `background`, the worker threads run in the same process."""

    def post_worker_init(_worker: Any) -> None:
        get_db(app).engine.dispose(close=False)  # connections from before fork stay unused
        if background:
            get_worker(app).start()

    def worker_exit(_server: Any, _worker: Any) -> None:
        get_worker(app).stop()

    Server(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": threads,
            "worker_connections": 4096,
            "backlog": 2048,
            "keepalive": 5,
            "timeout": 60,
            "graceful_timeout": 10,
            "post_worker_init": post_worker_init,
            "worker_exit": worker_exit,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
        },
    ).run()
