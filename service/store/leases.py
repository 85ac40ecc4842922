"""Leases: named locks in the database that expire, so a dead holder never blocks anyone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import case, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store.db import Database, rowcount
from service.store.models import Lease


def take(session: Session, key: str, owner: str, seconds: float) -> bool:
    """Take (or renew) `key` for `owner` unless someone else holds an unexpired lease.

    A renewal keeps `taken_at`; taking it over from another owner sets it.
    """
    now = time.time()
    taken = rowcount(
        session.execute(
            update(Lease)
            .where(Lease.key == key, or_(Lease.expires_at < now, Lease.owner == owner))
            .values(
                owner=owner,
                expires_at=now + seconds,
                taken_at=case((Lease.owner == owner, Lease.taken_at), else_=now),
            )
        )
    )
    if taken:
        return True
    if session.get(Lease, key) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Lease(key=key, owner=owner, expires_at=now + seconds, taken_at=now))
    except IntegrityError:
        return False
    return True


def release(session: Session, key: str, owner: str) -> None:
    session.execute(delete(Lease).where(Lease.key == key, Lease.owner == owner))


def renew_lease(key: str, owner: str, seconds: float) -> Callable[[Session], None]:
    def renew(session: Session) -> None:
        session.execute(
            update(Lease)
            .where(Lease.key == key, Lease.owner == owner)
            .values(expires_at=time.time() + seconds)
        )

    return renew


@contextmanager
def kept_alive(db: Database, renew: Callable[[Session], None], seconds: float) -> Iterator[None]:
    """Call `renew` every third of the lease length while the body runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(seconds / 3):
            with db.session() as session:
                renew(session)

    thread = threading.Thread(target=loop, name="lease-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
