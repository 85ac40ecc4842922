"""What a backup job is: one typed `BackupJob` built once from an instance, and its cron trigger.

A job of `deploy.backup.schedule.BackupScheduler` is built from a validated
instance once (`BackupJob.of`) and handed around as that value. APScheduler
persists a job's arguments in SQL, so there it is stored as plain values
(`BackupJob.stored`, names of secrets, never their values) and read back
into a `BackupJob` once when it runs (`BackupJob.from_stored`); the stored
shape is the one jobs scheduled by earlier versions hold, so they keep
running. Pure code, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from deploy.spec import AppCheck
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


@dataclass(frozen=True)
class BackupJob:
    """The backups of one instance: its backup config, volume shape, apps and time zone.

    `since` is when its schedule began (ISO 8601, UTC), kept across changes
    of the job so the staleness check does not alert before a first run was due.
    """

    project: str
    name: str
    backup: Backup
    timezone: str
    size_bytes: int
    filesystem: str
    apps: tuple[AppCheck, ...] = ()
    since: str | None = None

    @property
    def key(self) -> str:
        """`project/name` of the instance."""
        return f"{self.project}/{self.name}"

    @classmethod
    def of(cls, instance: Instance) -> BackupJob:
        """The backup job of a validated instance."""
        return cls(
            project=instance.project,
            name=instance.name,
            backup=instance.backup,
            timezone=instance.timezone,
            size_bytes=instance.volume.size_bytes,
            filesystem=instance.volume.filesystem,
            apps=tuple(
                AppCheck(a.name, a.domains[0], a.health_path) for a in instance.apps if a.domains
            ),
        )

    def stored(self) -> dict[str, Any]:
        """The job as APScheduler stores it: plain values, secrets by name only.

        Without `since` when it is not set yet (the scheduler compares a new
        job with a stored one without it).
        """
        b = self.backup
        env = [[k, {"secret": v.name} if isinstance(v, SecretRef) else v] for k, v in b.environment]
        values: dict[str, Any] = {
            "project": self.project,
            "name": self.name,
            "schedule": b.schedule,
            "check_schedule": b.check_schedule,
            "drill_schedule": b.drill_schedule,
            "timezone": self.timezone,
            "repository": b.repository,
            "password": b.password.name if b.password else None,
            "environment": env,
            "retention": asdict(b.retention),
            "size_bytes": self.size_bytes,
            "filesystem": self.filesystem,
            "apps": [[a.app, a.domain, a.path] for a in self.apps],
        }
        if self.since is not None:
            values["since"] = self.since
        return values

    @classmethod
    def from_stored(cls, values: dict[str, Any]) -> BackupJob:
        """A job back from what `stored` gave (what a scheduled job's arguments hold)."""
        env = tuple(
            (k, SecretRef(v["secret"]) if isinstance(v, dict) else v)
            for k, v in values["environment"]
        )
        backup = Backup(
            enabled=True,
            schedule=values["schedule"],
            repository=values["repository"],
            password=SecretRef(values["password"]) if values["password"] else None,
            retention=Retention(**values["retention"]),
            check_schedule=values["check_schedule"],
            environment=env,
            drill_schedule=values.get("drill_schedule"),
        )
        return cls(
            project=values["project"],
            name=values["name"],
            backup=backup,
            timezone=values["timezone"],
            size_bytes=values["size_bytes"],
            filesystem=values["filesystem"],
            apps=tuple(AppCheck(*app) for app in values.get("apps", ())),
            since=values.get("since"),
        )
