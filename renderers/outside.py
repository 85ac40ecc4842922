"""Settings that live outside the instance: DNS records and backups.

They go into `ArtifactSet.outside` (and from there into the manifest), so a
plan can tell a change that only touches DNS or backups from one that needs a
new instance. Always redacted: secrets appear as placeholders in both modes.
"""

from __future__ import annotations

from typing import Any

from renderers.secrets import placeholder
from schemas.model import Instance


def dns_settings(instance: Instance) -> dict[str, Any]:
    """The DNS provider settings and the records (the instance's sorted domains)."""
    dns = instance.dns
    return {
        "provider": dns.provider,
        "zone": dns.zone,
        "ttl": dns.ttl,
        "server": dns.server,
        "key_name": dns.key_name,
        "records": sorted(set(instance.domains)),
        **{
            key: value
            for key, value in (
                ("key_algorithm", dns.key_algorithm if dns.provider == "rfc2136" else None),
                ("key_secret", placeholder(dns.key_secret)),
                ("token_secret", placeholder(dns.token_secret)),
                ("access_key_id", dns.access_key_id),
                ("secret_access_key", placeholder(dns.secret_access_key)),
                ("endpoint", dns.endpoint),
            )
            if value is not None
        },
    }


def backup_settings(instance: Instance) -> dict[str, Any]:
    """The backup job's settings, with the repository password as a placeholder."""
    backup = instance.backup
    retention = backup.retention
    return {
        "enabled": backup.enabled,
        "schedule": backup.schedule,
        "check_schedule": backup.check_schedule,
        **({"drill_schedule": backup.drill_schedule} if backup.drill_schedule else {}),
        "repository": backup.repository,
        "retention": {
            "daily": retention.daily,
            "weekly": retention.weekly,
            "monthly": retention.monthly,
            "yearly": retention.yearly,
        },
        "password": placeholder(backup.password),
        "environment": {
            key: value.placeholder if not isinstance(value, str) else value
            for key, value in sorted(backup.environment)
        },
        "timezone": instance.timezone,
        "writers": sorted(s.name for s in instance.services if s.writer),
    }


def outside(instance: Instance) -> dict[str, Any]:
    """Both settings, keyed `dns` and `backup`."""
    return {"dns": dns_settings(instance), "backup": backup_settings(instance)}
