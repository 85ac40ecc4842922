"""Validation behaviour beyond the example files: layering, locations, all errors at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from schemas import ConfigError, SecretRef, load_repo
from schemas.rules import parse_size
from schemas.validate import deep_merge

SITE = """\
apps:
  - name: site
    image: nginx:1.27.3
    port: 80
    domains: [{domain}]
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_repo(root)
    return [str(p) for p in caught.value.problems]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "instances/a/apps.config": SITE.format(domain="bad_domain") + "volume: {size: 1X}\n",
            "instances/b/apps.config": "apps: [{name: B}]\n",
        },
    )
    found = problems(tmp_path)
    assert any("instances/a/apps.config:5: apps[0].domains[0]" in p for p in found)
    assert any("instances/a/apps.config:6: volume.size" in p for p in found)
    assert any("instances/b/apps.config:1: apps[0].name" in p for p in found)
    assert any("instances/b/apps.config:1: apps[0].domains: is required" in p for p in found)


def test_problem_in_a_default_points_at_swapyard_yaml(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "swapyard.yaml": """\
            defaults:
              backup:
                enabled: true
                repository: /srv/backups
                password: hunter2
            """,
            "instances/a/apps.config": SITE.format(domain="a.example.org"),
        },
    )
    assert problems(tmp_path) == [
        "swapyard.yaml:5: defaults.backup.password: found an inline value; expected a reference "
        "secret:NAME (put the value in the secret store, never in git)"
    ]


def test_instance_value_overrides_a_bad_default(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "swapyard.yaml": "defaults:\n  instance:\n    timezone: UTC\n",
            "instances/a/apps.config": SITE.format(domain="a.example.org")
            + "instance:\n  timezone: Europe/Paris\n",
        },
    )
    (instance,) = load_repo(tmp_path).instances
    assert instance.timezone == "Europe/Paris"


def test_projects_select_instances_by_glob(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "swapyard.yaml": """\
            projects:
              production: {branches: [main], instances: ["*", "!dev-*"]}
              dev: {branches: [dev], instances: ["dev-*"]}
            """,
            "instances/web/apps.config": SITE.format(domain="example.org"),
            "instances/dev-web/apps.config": SITE.format(domain="dev.example.org"),
        },
    )
    repo = load_repo(tmp_path)
    assert [i.key for i in repo.instances] == ["dev/dev-web", "production/web"]
    assert repo.project_for_branch("dev").name == "dev"
    assert repo.project_for_branch("feature-x") is None


def test_instance_in_no_project_is_a_warning(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "swapyard.yaml": "projects:\n  production: {branches: [main], instances: [web]}\n",
            "instances/web/apps.config": SITE.format(domain="example.org"),
            "instances/old/apps.config": SITE.format(domain="old.example.org"),
        },
    )
    repo = load_repo(tmp_path)
    assert [i.key for i in repo.instances] == ["production/web"]
    assert repo.warnings == ("instances/old: not selected by any project; not deployed",)


def test_same_domain_in_two_projects_is_fine(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "swapyard.yaml": "projects:\n  a: {branches: [main]}\n  b: {branches: [next]}\n",
            "instances/web/apps.config": SITE.format(domain="example.org"),
        },
    )
    assert [i.key for i in load_repo(tmp_path).instances] == ["a/web", "b/web"]


def test_custom_app_model(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "instances/a/apps.config": """\
            apps:
              - name: api
                image: ghcr.io/acme/api:1.4.2
                port: 8080
                domains: [api.example.org]
                env: {DEBUG: false, WORKERS: 4}
                secrets: {TOKEN: secret:api_token}
                data: [/var/lib/api]
                services:
                  - name: queue
                    image: redis:7.4.1
            """,
        },
    )
    (instance,) = load_repo(tmp_path).instances
    api, queue = instance.apps[0].services
    assert api.environment == (
        ("DEBUG", "false"),
        ("TOKEN", SecretRef("api_token")),
        ("WORKERS", "4"),
    )
    assert api.writer and api.exposed and api.depends_on == ("api-queue",)
    assert api.data[0].subpath == "api/var-lib-api" and api.data[0].target == "/var/lib/api"
    assert queue.name == "api-queue" and not queue.writer and not queue.exposed


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "instances" / "a" / "apps.config"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"apps: \xff\xfe\n")
    assert problems(tmp_path) == ["instances/a/apps.config: is not UTF-8 text"]


def test_symlinked_shipped_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"instances/a/apps.config": SITE.format(domain="a.example.org")})
    files = tmp_path / "instances" / "a" / "files"
    files.mkdir()
    (files / "passwd").symlink_to("/etc/passwd")
    assert problems(tmp_path) == [
        "instances/a/files/passwd: is a symbolic link; expected a regular file "
        "(links could point outside the repo)"
    ]


def test_helpers() -> None:
    assert parse_size("10G") == 10 << 30 and parse_size("512M") == 512 << 20
    assert parse_size("10GB") is None and parse_size("0G") is None
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


def test_secret_references_must_exist_in_the_store(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "swapyard.yaml": """\
            defaults:
              backup: {enabled: true, repository: /srv/b, password: secret:restic}
            """,
            "instances/a/apps.config": SITE.format(domain="a.example.org")
            + "    secrets: {TOKEN: secret:api_token}\n",
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_repo(tmp_path, known_secrets=["api_token"])
    assert [(p.file, p.line, p.field) for p in caught.value.problems] == [
        ("swapyard.yaml", 2, "defaults.backup.password")
    ]
    assert load_repo(tmp_path, known_secrets=["api_token", "restic"]).instances
    assert load_repo(tmp_path).instances  # without a store, names are not checked


def test_cli_checks_secrets_against_a_store_directory(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    write(
        tmp_path,
        {
            "instances/a/apps.config": SITE.format(domain="a.example.org")
            + "    secrets: {TOKEN: secret:api_token}\n"
        },
    )
    store = tmp_path / "store"
    store.mkdir()
    result = run_cli("validate", str(tmp_path), "--secrets-dir", str(store))
    assert (
        result.returncode == 1 and "secret 'api_token' is not in the secret store" in result.stderr
    )
    (store / "api_token").write_text("s3cr3t")
    result = run_cli("validate", str(tmp_path), "--secrets-dir", str(store))
    assert result.returncode == 0, result.stderr


def test_an_unknown_field_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, {"instances/a/apps.config": SITE.format(domain="a.example") + "zzz: 1\n"})
    [problem] = problems(tmp_path)
    assert problem.startswith("instances/a/apps.config:6: zzz: unknown field; expected one of: ")
    assert "apps, backup" in problem


@pytest.mark.parametrize(
    ("dns", "expected"),
    [
        ("{provider: rfc2136, zone: example.org}", ["dns.server: is required for rfc2136"]),
        ("{provider: hetzner, zone: example.org}", ["dns.token_secret: is required for hetzner"]),
        (
            "{provider: hetzner, zone: example.org, token_secret: 'secret:t', ttl: 30}",
            ["dns.ttl: found 30; Hetzner DNS takes 60 or more"],
        ),
        (
            "{provider: route53, zone: example.org, access_key_id: AKIA0123456789ABCDEF}",
            ["dns.secret_access_key: and access_key_id go together"],
        ),
        (
            "{provider: route53, zone: example.org, key_name: k}",
            ["dns.key_name: is a setting of rfc2136, and dns.provider is 'route53'"],
        ),
        ("{provider: route53, zone: example.net}", ["apps[0].domains[0]: site.example.org is not"]),
        ("{provider: route53, zone: example.org, endpoint: 'ftp://x'}", ["dns.endpoint"]),
    ],
)
def test_dns_settings_are_checked_per_provider(
    tmp_path: Path, dns: str, expected: list[str]
) -> None:
    write(
        tmp_path,
        {"instances/a/apps.config": SITE.format(domain="site.example.org") + f"dns: {dns}\n"},
    )
    found = problems(tmp_path)
    for text in expected:
        assert any(text in p and "instances/a/apps.config" in p for p in found), found


def test_dns_settings_that_fit_their_provider_load(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "instances/a/apps.config": SITE.format(domain="site.example.org")
            + "dns: {provider: route53, zone: example.org, ttl: 60}\n"
        },
    )
    (instance,) = load_repo(tmp_path).instances
    assert (instance.dns.provider, instance.dns.zone, instance.dns.ttl) == (
        "route53",
        "example.org",
        60,
    )
