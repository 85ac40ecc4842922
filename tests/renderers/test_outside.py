"""Settings kept outside the instance: DNS and backups, always redacted."""

from __future__ import annotations

from renderers import RenderOptions, render_instance
from schemas.model import Instance
from tests.renderers.helpers import fake_secrets


def test_dns_records_are_the_sorted_domains(instance: Instance) -> None:
    dns = render_instance(instance).outside["dns"]
    assert dns["records"] == sorted(set(instance.domains))
    assert {k: dns[k] for k in ("provider", "zone", "ttl", "server", "key_name")} == {
        "provider": instance.dns.provider,
        "zone": instance.dns.zone,
        "ttl": instance.dns.ttl,
        "server": instance.dns.server,
        "key_name": instance.dns.key_name,
    }
    ref = instance.dns.key_secret  # a placeholder at most, even in a resolved render
    resolved = render_instance(
        instance, RenderOptions(mode="resolved", secrets=fake_secrets(instance).get)
    ).outside["dns"]
    assert resolved.get("key_secret") == dns.get("key_secret") == (ref.placeholder if ref else None)


def test_backup_password_stays_a_placeholder_even_resolved(instance: Instance) -> None:
    options = RenderOptions(mode="resolved", secrets=fake_secrets(instance).get)
    backup = render_instance(instance, options).outside["backup"]
    password = instance.backup.password
    assert backup["password"] == (password.placeholder if password else None)
    assert backup["enabled"] == instance.backup.enabled
    assert backup["schedule"] == instance.backup.schedule
    assert backup["check_schedule"] == instance.backup.check_schedule
    assert backup["repository"] == instance.backup.repository
    assert backup["retention"]["daily"] == instance.backup.retention.daily


def test_manifest_carries_outside_settings(instance: Instance) -> None:
    manifest = render_instance(instance).manifest()
    assert set(manifest) == {"instance", "digest", "artifacts", "dns", "backup"}


def test_dns_only_change_keeps_the_digest(instance: Instance) -> None:
    from dataclasses import replace

    moved = replace(instance, dns=replace(instance.dns, ttl=instance.dns.ttl + 60))
    before, after = render_instance(instance), render_instance(moved)
    assert before.digest == after.digest
    assert before.outside != after.outside
