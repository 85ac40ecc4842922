"""How fresh an instance's backups are, for the pages: a word and a shape, never colour alone.

`fresh` when the last good backup is no older than its schedule allows (the
longest gap between two scheduled runs, plus the scheduler's jitter and an
hour's grace, as the staleness check counts it), `late` up to twice that,
`missing` past it or when there was never one, and `not due` when the schedule
began too recently for a first backup to be due. The ages come from the backup
journal in one grouped query for all instances, so the overview costs the same
with a long history.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from deploy.backup.check import max_interval
from deploy.backup.journal import RunState, runs

GRACE = dt.timedelta(hours=1)
LATE_FACTOR = 2  # past this many allowed ages a backup is as good as missing


@dataclass(frozen=True)
class Freshness:
    """One instance's backup freshness: its state, the shape and words that say it."""

    state: str  # fresh | late | missing | due
    last: dt.datetime | None  # the last good backup (UTC), if any
    allowed: dt.timedelta

    @property
    def shape(self) -> str:
        """A mark that tells the states apart without colour."""
        return {"fresh": "●", "late": "▲", "missing": "✕", "due": "○"}[self.state]

    @property
    def words(self) -> str:
        """The state in words, as a page shows it next to the shape."""
        return {
            "fresh": "fresh",
            "late": "late",
            "missing": "missing",
            "due": "not due yet",
        }[self.state]

    @property
    def css(self) -> str:
        """The page's class for the state (colour added to the words and shape)."""
        return {"fresh": "success", "late": "waiting", "missing": "failure", "due": ""}[self.state]


@functools.lru_cache(maxsize=256)
def _period(schedule: str, timezone: str) -> dt.timedelta:
    # sampling a cron schedule costs a few ms: the overview asks once per distinct schedule
    return max_interval(schedule, timezone)


def judge(
    last: dt.datetime | None,
    schedule: str,
    timezone: str,
    jitter: float,
    since: dt.datetime | None,
    now: dt.datetime,
) -> Freshness:
    """The freshness of one instance whose last good backup finished at `last` (UTC)."""
    allowed = _period(schedule, timezone) + dt.timedelta(seconds=jitter) + GRACE
    if last is None:
        young = since is not None and now - since <= allowed
        return Freshness("due" if young else "missing", None, allowed)
    age = now - last
    if age <= allowed:
        return Freshness("fresh", last, allowed)
    return Freshness("late" if age <= allowed * LATE_FACTOR else "missing", last, allowed)


def last_good_backups(engine: sa.Engine) -> dict[str, dt.datetime]:
    """When each instance's last successful backup finished (UTC), by `project/name`."""
    query = (
        sa.select(runs.c.project, runs.c.name, sa.func.max(runs.c.finished))
        .where(runs.c.kind == "backup", runs.c.state == RunState.SUCCEEDED)
        .group_by(runs.c.project, runs.c.name)
    )
    with engine.connect() as conn:
        return {
            f"{project}/{name}": when.replace(tzinfo=dt.UTC)
            for project, name, when in conn.execute(query)
            if when is not None
        }


def of_all(
    backups: Any, now: dt.datetime | None = None, only: str | None = None
) -> dict[str, Freshness]:
    """The freshness of every instance with scheduled backups (`backups`: the service's
    `service.worker.backups.Backups`), by `project/name`; with `only`, of that one alone
    (an instance's page judges no other schedule)."""
    now = now or dt.datetime.now(dt.UTC)
    scheduler = backups.scheduler
    last = last_good_backups(scheduler.history.engine)
    out = {}
    for key, job in scheduler.jobs().items():
        if only is not None and key != only:
            continue
        since = dt.datetime.fromisoformat(job.since) if job.since else None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        out[key] = judge(
            last.get(key), job.backup.schedule, job.timezone, scheduler.jitter, since, now
        )
    return out
