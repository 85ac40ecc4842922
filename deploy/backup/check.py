"""Is an instance's backup healthy? Staleness of its newest snapshot, and `restic check`.

Staleness: the newest snapshot of an instance may be at most as old as the
longest gap between two runs of its cron schedule (in its timezone), plus
the jitter and a grace period. Older (or no snapshot at all once the
schedule had a chance to run) raises a `stale` alert in the backup journal
and logs at error; a fresh snapshot clears it. Both functions journal
their outcome and never raise for an unhealthy repository, so a batch over
many instances carries on.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter

from deploy.backup.journal import BackupJournal, RunState
from deploy.backup.restic import ResticError, ResticRepo
from deploy.backup.run import tags_of

log = logging.getLogger(__name__)


def max_interval(schedule: str, timezone: str = "UTC", samples: int = 60) -> dt.timedelta:
    """The longest gap between two consecutive runs of a 5-field cron schedule."""
    start = dt.datetime.now(ZoneInfo(timezone))
    it = croniter(schedule, start)
    times = [it.get_next(dt.datetime) for _ in range(samples)]
    return max(b - a for a, b in itertools.pairwise(times))


@dataclass(frozen=True)
class Staleness:
    """The verdict of a staleness check; `newest` is None when there is no snapshot."""

    stale: bool
    newest: dt.datetime | None
    allowed: dt.timedelta
    message: str


def check_staleness(
    history: BackupJournal,
    repo: ResticRepo,
    project: str,
    name: str,
    *,
    schedule: str,
    timezone: str = "UTC",
    jitter: float = 0,
    grace: dt.timedelta = dt.timedelta(hours=1),
    since: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Staleness:
    """Raise or clear the `stale` alert of an instance from its newest snapshot's age.

    `since` is when backups were first scheduled (no snapshot before then
    plus the allowed age is not stale yet). An unreachable repository
    counts as stale: nobody can tell a backup exists.
    """
    now = now or dt.datetime.now(dt.UTC)
    allowed = max_interval(schedule, timezone) + dt.timedelta(seconds=jitter) + grace
    key = f"{project}/{name}"
    try:
        snaps = repo.snapshots(tags_of(project, name))
    except ResticError as exc:
        msg = f"{key}: cannot list snapshots to check their age: {exc}"
        return _verdict(history, project, name, True, None, allowed, msg)
    newest = snaps[-1].time if snaps else None
    if newest is None:
        young = since is not None and now - since <= allowed
        msg = f"{key}: no snapshot yet" + ("" if young else f" (allowed age {allowed})")
        return _verdict(history, project, name, not young, None, allowed, msg)
    age = now - newest
    stale = age > allowed
    msg = f"{key}: newest snapshot is {_human(age)} old (allowed {_human(allowed)})"
    return _verdict(history, project, name, stale, newest, allowed, msg)


def _human(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _verdict(
    history: BackupJournal,
    project: str,
    name: str,
    stale: bool,
    newest: dt.datetime | None,
    allowed: dt.timedelta,
    message: str,
) -> Staleness:
    if stale:
        log.error("backup stale: %s", message)
        history.raise_alert(project, name, "stale", message)
    else:
        history.clear_alert(project, name, "stale")
    return Staleness(stale, newest, allowed, message)


def check_repository(history: BackupJournal, repo: ResticRepo, project: str, name: str) -> bool:
    """`restic check` of an instance's repository, journaled as a `check` run; True when clean."""
    run_id = history.begin(project, name, "check", repository=repo.repository)
    try:
        report = repo.check()
    except ResticError as exc:
        history.finish(run_id, RunState.FAILED, error=str(exc))
        history.raise_alert(project, name, "check", f"check {run_id}: {exc}")
        log.error("%s/%s: restic check failed: %s", project, name, exc)
        return False
    history.finish(
        run_id, RunState.SUCCEEDED, note=report.strip().splitlines()[-1] if report else None
    )
    history.clear_alert(project, name, "check")
    return True
