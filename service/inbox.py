"""The durable inbox: a delivery is committed to the database before it is acknowledged."""

from __future__ import annotations

import time

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from handlers.hooks import Incoming, Recorded

from .db import Database
from .models import Event

_INSERT = insert(Event).returning(Event.id)


class SqlInbox:
    def __init__(self, db: Database, public_url: str):
        self.db = db
        self.public_url = public_url

    def event_url(self, event_id: int) -> str:
        return f"{self.public_url}/api/events/{event_id}"

    def record(self, incoming: Incoming) -> Recorded:
        c = incoming.classified
        row = {
            "forge": incoming.forge,
            "event_name": incoming.event_name,
            "kind": c.kind,
            "delivery_id": incoming.delivery_id,
            "received_at": time.time(),
            "status": c.status,
            "reason": c.reason,
            "repository": c.repository,
            "clone_url": c.clone_url,
            "ref": c.ref,
            "before": c.before,
            "after": c.after,
            "attempts": 0,
        }
        # A Core insert, not the ORM: the unit of work (flush, identity map) cost ~0.6 ms
        # of Python per delivery, all of it under the SQLite write lock.
        try:
            with self.db.connection() as connection:
                event_id: int = connection.execute(_INSERT, row).scalar_one()
        except IntegrityError:
            with self.db.session() as session:
                seen = session.scalars(
                    select(Event).where(
                        Event.forge == incoming.forge, Event.delivery_id == incoming.delivery_id
                    )
                ).one()
            return Recorded(seen.id, seen.status, seen.reason, True, self.event_url(seen.id))
        return Recorded(event_id, c.status, c.reason, False, self.event_url(event_id))
