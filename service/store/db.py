"""The database: one engine and session factory per app, created in `init_app`.

SQLite is the embedded default: WAL journal, a busy timeout, and every
transaction started with `BEGIN IMMEDIATE`, so that two workers (threads or
processes) never deadlock upgrading a read to a write. Any SQLAlchemy URL
works (PostgreSQL when several processes share the work). The schema comes
from the migrations (service.store.migrate), run when the database is opened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy import Connection, CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.store import migrate


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine: Engine = make_engine(url)
        migrate.upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite takes one writer at a time; threads queue here instead of in SQLite's
        # busy handler, whose sleeps (up to 100 ms each) would dominate latency.
        self._serial: AbstractContextManager[Any] = (
            threading.Lock() if url.startswith("sqlite") else nullcontext()
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._serial, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A Core connection in a transaction: for short hot-path writes (the inbox insert)
        that need no ORM unit of work, so the write lock is held for less time."""
        with self._serial, self.engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    """An engine for `url`; on SQLite every transaction begins with `BEGIN IMMEDIATE`."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: WAL commits are fsynced, so an acknowledged event survives power loss
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (how a conditional claim knows it won)."""
    return cast(CursorResult[Any], result).rowcount


def init_app(app: Flask, url: str) -> Database:
    db = Database(url)
    app.extensions["swapyard.db"] = db
    return db


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["swapyard.db"]
