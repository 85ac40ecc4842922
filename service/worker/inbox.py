"""The durable inbox: a delivery is committed to the database before it is acknowledged.

Deliveries arriving together share one transaction (group commit): the first
request thread to find the writer free becomes the leader, takes every row
queued so far, inserts them in one statement and commits once, then wakes the
others with their ids. Under load that turns N commits (each an fsync with
SQLite's `synchronous=FULL`) into one, and on an idle service it is a plain
insert-and-commit: nobody waits for a batch to fill. No acknowledgement is
given before the commit that holds its row has returned. A queued push's
first commit status (`pending` on the `swapyard` context) is stored in the
same transaction, so the forge shows the push as received within the
status sender's next round, whatever the worker is doing; not for a forge
without a token (statuses off), whose rows would only be given up.

A delivery id seen before (a forge's redelivery, or the same delivery twice
in one batch) is not inserted again (`ON CONFLICT DO NOTHING`): it is
answered as a duplicate with the first event's id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Insert, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from handlers.intake.endpoint import Incoming, Recorded
from handlers.intake.events import EventStatus
from service.store.db import Database
from service.store.models import Event, StatusOutbox
from service.worker.dispatch import received_status

log = logging.getLogger(__name__)

# INSERT ... ON CONFLICT is dialect-specific in SQLAlchemy (same SQL on both)
_UPSERTS: dict[str, Callable[..., Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class _Slot:
    """One delivery waiting for the commit that stores it."""

    __slots__ = ("done", "error", "incoming", "recorded")

    def __init__(self, incoming: Incoming):
        self.incoming = incoming
        self.done = False
        self.recorded: tuple[int, str, str | None, bool] | None = None
        self.error: BaseException | None = None


class SqlInbox:
    def __init__(
        self,
        db: Database,
        public_url: str,
        status_forges: frozenset[str],
        on_queued: Callable[[], None] | None = None,
    ):
        self.db = db
        self.public_url = public_url
        self.status_forges = status_forges  # forges with a token: the others get no status
        upsert = _UPSERTS.get(db.engine.dialect.name)
        if upsert is None:
            raise ValueError(f"the inbox supports SQLite and PostgreSQL, not {db.url!r}")
        self._insert: Insert = (
            upsert(Event)
            .on_conflict_do_nothing(index_elements=["forge", "delivery_id"])
            .returning(Event.id, Event.forge, Event.delivery_id)
        )
        self._queue: list[_Slot] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()
        self.batches = 0  # transactions committed; read by the tests
        self.on_queued = on_queued  # told when queued events were stored (wakes the worker)

    @property
    def waiting(self) -> int:
        """Deliveries queued for the next batch (the current one is being written)."""
        with self._queue_lock:
            return len(self._queue)

    def event_url(self, event_id: int) -> str:
        return f"{self.public_url}/api/events/{event_id}"

    def record(self, incoming: Incoming) -> Recorded:
        slot = _Slot(incoming)
        with self._queue_lock:
            self._queue.append(slot)
        with self._writer:
            if not slot.done:  # nobody took it yet: lead a batch of all queued so far
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._write(batch)
        if slot.error is not None:
            raise slot.error
        assert slot.recorded is not None
        event_id, status, reason, duplicate = slot.recorded
        return Recorded(event_id, status, reason, duplicate, self.event_url(event_id))

    def _write(self, batch: list[_Slot]) -> None:
        queued = 0
        try:
            with self.db.connection() as connection:
                queued = self._store(connection, batch)
            self.batches += 1
        except BaseException as exc:  # every waiter learns its delivery was not stored
            for slot in batch:
                slot.recorded, slot.error = None, exc
        finally:
            for slot in batch:
                slot.done = True
        if queued and self.on_queued is not None:
            try:
                self.on_queued()
            except Exception:  # stored and acknowledged all the same; the worker polls
                log.exception("inbox: telling of queued events failed")

    def _store(self, connection: Connection, batch: list[_Slot]) -> int:
        """Insert the batch's events (and first statuses); returns how many were queued."""
        now = time.time()
        inserted = {
            (forge, delivery): event_id
            for event_id, forge, delivery in connection.execute(
                self._insert, [_row(slot.incoming, now) for slot in batch]
            )
        }
        pending: list[_Slot] = []
        received: list[dict[str, Any]] = []
        queued = 0
        for slot in batch:
            c, key, forge = slot.incoming.classified, _key(slot.incoming), slot.incoming.forge
            event_id = inserted.pop(key, None)  # pop: a second slot with this key is a duplicate
            if event_id is None:
                pending.append(slot)
                continue
            slot.recorded = (event_id, c.status, c.reason, False)
            queued += c.status == EventStatus.QUEUED
            if (
                c.status == EventStatus.QUEUED
                and c.repository
                and c.after
                and forge in self.status_forges
            ):
                received.append(
                    received_status(event_id, forge, c.repository, c.after, self.public_url, now)
                )
        if received:
            connection.execute(insert(StatusOutbox), received)
        if pending:
            keys = {_key(slot.incoming) for slot in pending}
            seen = {
                (row.forge, row.delivery_id): (row.id, row.status, row.reason, True)
                for row in connection.execute(
                    select(
                        Event.id, Event.forge, Event.delivery_id, Event.status, Event.reason
                    ).where(tuple_(Event.forge, Event.delivery_id).in_(keys))
                )
            }
            for slot in pending:
                slot.recorded = seen[_key(slot.incoming)]
        return queued


def _key(incoming: Incoming) -> tuple[str, str]:
    return incoming.forge, incoming.delivery_id


def _row(incoming: Incoming, received_at: float) -> dict[str, Any]:
    c = incoming.classified
    return {
        "forge": incoming.forge,
        "event_name": incoming.event_name,
        "kind": c.kind,
        "delivery_id": incoming.delivery_id,
        "received_at": received_at,
        "status": c.status,
        "reason": c.reason,
        "repository": c.repository,
        "clone_url": c.clone_url,
        "ref": c.ref,
        "before": c.before,
        "after": c.after,
        "attempts": 0,
    }
