"""service.quickstart.steps: the quick start's config is one the service accepts."""

from __future__ import annotations

from pathlib import Path

from service.quickstart.steps import EXAMPLE, Layout, fill_secrets, secret_names, write_config
from service.settings import load_settings


def test_every_secret_of_the_example_gets_a_generated_value(tmp_path: Path) -> None:
    names = secret_names(EXAMPLE)
    assert {"restic_password", "orders_db_password", "ghost_db_password"} <= names
    store = tmp_path / "secrets"
    assert fill_secrets(store, names) == len(names)
    before = (store / "restic_password").read_text()
    assert fill_secrets(store, names) == 0  # idempotent: values are kept
    assert (store / "restic_password").read_text() == before
    assert (store / "restic_password").stat().st_mode & 0o777 == 0o600


def test_written_config_loads_with_the_local_provider_and_no_forge(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    write_config(lay, 8090, "127.0.0.1:8000", "127.0.0.1:2119", {"caddy:2.8.4": "local/caddy:1"})
    settings = load_settings({"config_file": str(lay.config)}, environ={})
    assert settings.provider == "local" and settings.deploy is True
    assert settings.database_url.startswith("sqlite:///")
    assert settings.provider_options["edge_listen"] == ("127.0.0.1:8000",)
    assert settings.provider_options["edge_admin"] == "127.0.0.1:2119"
    assert settings.render_https is False
    assert settings.image_map == {"caddy:2.8.4": "local/caddy:1"}
    assert settings.webhook_secret and settings.api_token
    assert settings.github_token is None  # statuses are given up at once, not retried
    assert settings.repositories == {"quickstart/config": str(lay.bare)}


def test_the_seeded_copy_backs_up_locally_writes_no_dns_and_stays_valid(tmp_path: Path) -> None:
    import shutil

    from schemas import load_repo
    from service.quickstart.steps import local_backups, no_dns

    lay = Layout(tmp_path / "qs")
    shutil.copytree(EXAMPLE, lay.clone)
    assert any(i.dns.provider != "none" for i in load_repo(lay.clone).instances)
    local_backups(lay)
    no_dns(lay)
    repo = load_repo(lay.clone)
    production = [i for i in repo.instances if i.project == "production"]
    assert production and all(i.backup.repository == str(lay.base / "backups") for i in production)
    assert {i.dns.provider for i in repo.instances} == {"none"}
