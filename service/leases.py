"""Leases: named locks in the database that expire, so a dead holder never blocks anyone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import Database
from .models import Lease


def take(session: Session, key: str, owner: str, seconds: float) -> bool:
    """Take (or renew) `key` for `owner` unless someone else holds an unexpired lease."""
    now = time.time()
    taken = session.execute(
        update(Lease)
        .where(Lease.key == key, or_(Lease.expires_at < now, Lease.owner == owner))
        .values(owner=owner, expires_at=now + seconds)
    ).rowcount
    if taken:
        return True
    if session.get(Lease, key) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Lease(key=key, owner=owner, expires_at=now + seconds))
    except IntegrityError:
        return False
    return True


def release(session: Session, key: str, owner: str) -> None:
    session.execute(delete(Lease).where(Lease.key == key, Lease.owner == owner))


@contextmanager
def kept_alive(db: Database, key: str, owner: str, seconds: float) -> Iterator[None]:
    """Renew the lease on `key` every third of its length while the body runs."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(seconds / 3):
            with db.session() as session:
                session.execute(
                    update(Lease)
                    .where(Lease.key == key, Lease.owner == owner)
                    .values(expires_at=time.time() + seconds)
                )

    thread = threading.Thread(target=renew, name=f"lease-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
