"""What a backup job is: the plain values it stores, and its cron trigger.

A job of `deploy.backup.schedule.BackupScheduler` holds only plain values (names of
secrets, never their values) so that APScheduler can persist it in SQL;
`job_spec` builds them from a validated instance and `backup_of` gives the
`Backup` config back when the job runs. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from schemas.model import Backup, Instance, Retention, SecretRef

_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(schedule: str, timezone: str, jitter: int | None = None) -> CronTrigger:
    """A CronTrigger from a 5-field crontab, with crontab's weekdays (0 and 7 are Sunday).

    APScheduler 3.x numbers weekdays from Monday, so numbers become names.
    """
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"cron schedule {schedule!r}: expected 5 fields")
    minute, hour, day, month, dow = fields
    dow = re.sub(r"\d+", lambda m: _DOW[int(m.group()) % 7], dow)
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=dow,
        timezone=ZoneInfo(timezone),
        jitter=jitter,
    )


def job_spec(instance: Instance) -> dict[str, Any]:
    """What a backup job of `instance` stores: plain values, secrets by name only."""
    b = instance.backup
    env = [[k, {"secret": v.name} if isinstance(v, SecretRef) else v] for k, v in b.environment]
    return {
        "project": instance.project,
        "name": instance.name,
        "schedule": b.schedule,
        "check_schedule": b.check_schedule,
        "drill_schedule": b.drill_schedule,
        "timezone": instance.timezone,
        "repository": b.repository,
        "password": b.password.name if b.password else None,
        "environment": env,
        "retention": asdict(b.retention),
        "size_bytes": instance.volume.size_bytes,
        "filesystem": instance.volume.filesystem,
        "apps": [[a.name, a.domains[0], a.health_path] for a in instance.apps if a.domains],
    }


def backup_of(spec: dict[str, Any]) -> Backup:
    """The `Backup` config back from a job spec (for `repository_for`)."""
    env = tuple(
        (k, SecretRef(v["secret"]) if isinstance(v, dict) else v) for k, v in spec["environment"]
    )
    return Backup(
        enabled=True,
        schedule=spec["schedule"],
        repository=spec["repository"],
        password=SecretRef(spec["password"]) if spec["password"] else None,
        retention=Retention(**spec["retention"]),
        check_schedule=spec["check_schedule"],
        environment=env,
    )
