"""service.quickstart.githook: the post-receive hook builds GitHub's push payload and signs it."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from service.quickstart.githook import ZERO, install, push_payload, sign
from tests.service.conftest import ConfigRepo


def test_payload_of_a_new_branch_then_of_a_change(config_repo: ConfigRepo) -> None:
    first = config_repo.sha()
    body = push_payload(config_repo.bare, ZERO, first, "refs/heads/main", "me/config", "/x.git")
    assert body["created"] and not body["deleted"] and body["after"] == first
    assert body["repository"]["full_name"] == "me/config"
    assert body["repository"]["clone_url"] == "/x.git"
    assert body["head_commit"]["id"] == first
    assert "instances/www/apps.config" in body["head_commit"]["added"]

    second = config_repo.commit("change", {"instances/www/files/site/index.html": "v2\n"})
    config_repo.push()
    body = push_payload(config_repo.bare, first, second, "refs/heads/main", "me/config", "/x.git")
    assert not body["created"] and not body["forced"]
    assert [c["id"] for c in body["commits"]] == [second]
    assert body["commits"][0]["modified"] == ["instances/www/files/site/index.html"]


def test_signature_is_githubs() -> None:
    body = b'{"ref":"refs/heads/main"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == f"sha256={expected}"


def test_install_writes_an_executable_hook_and_its_settings(
    config_repo: ConfigRepo, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    hook = install(config_repo.bare, "http://127.0.0.1:9", secret, "me/config")
    assert hook.stat().st_mode & 0o111 and "service.quickstart.githook" in hook.read_text()
    settings = json.loads((config_repo.bare / "hooks" / "swapyard-hook.json").read_text())
    assert settings["clone_url"] == str(config_repo.bare.resolve())
    assert settings["secret_file"] == str(secret.resolve())


def test_a_push_succeeds_and_says_so_when_the_service_is_down(
    config_repo: ConfigRepo, tmp_path: Path
) -> None:
    import socket
    import subprocess

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    install(config_repo.bare, f"http://127.0.0.1:{port}", secret, "me/config")
    config_repo.commit("change", {"instances/www/files/site/index.html": "v3\n"})
    proc = subprocess.run(
        ["git", "push", "origin", "HEAD:refs/heads/main"],
        cwd=config_repo.work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "swapyard: not delivered (refs/heads/main): cannot reach" in proc.stderr
