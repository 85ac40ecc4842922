"""The steps of the quick start (service.quickstart.flow), each usable alone.

Layout of the quick start directory, registry detection, the secret store,
the service config, starting and stopping `swapyard serve` by its pid file,
the local "forge" (a bare repository with service.quickstart.githook's post-receive
hook) and its clone, pushing, waiting for a push's deployments through the
API, and probing URLs through the edge. tests/e2e use the waiting helpers.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from handlers.gitops.pipeline import DeploymentStatus
from handlers.intake.events import EventStatus
from schemas.errors import SwapyardError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config-repo"
FULL_NAME = "quickstart/config"
SECRET_REF = re.compile(r"secret:([A-Za-z0-9_.-]+)")


class QuickstartError(SwapyardError):
    """A quick start step failed; the message says which and where to look."""


def run(argv: list[str], cwd: Path | None = None, timeout: float = 120) -> str:
    """The one subprocess seam of this module (git, docker); raises on failure."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "quickstart",
        "GIT_AUTHOR_EMAIL": "quickstart@localhost",
        "GIT_COMMITTER_NAME": "quickstart",
        "GIT_COMMITTER_EMAIL": "quickstart@localhost",
    }
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QuickstartError(f"{' '.join(argv[:3])}: {exc}") from exc
    if proc.returncode != 0:
        raise QuickstartError(f"{' '.join(argv[:3])} failed: {(proc.stderr or proc.stdout)[-800:]}")
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class Layout:
    """Where the quick start keeps everything (one directory)."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "service.yaml"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def secrets(self) -> Path:
        return self.data / "secrets"

    @property
    def pid(self) -> Path:
        return self.base / "serve.pid"

    @property
    def log(self) -> Path:
        return self.base / "serve.log"

    @property
    def bare(self) -> Path:
        return self.base / "forge" / "config.git"

    @property
    def clone(self) -> Path:
        return self.base / "config"


def registry_reachable(image: str = "caddy:2.8.4", timeout: float = 20) -> bool:
    """Whether `docker pull` of a small upstream image works.

    A pull, not a look at local images: one image present says nothing about
    the others the example needs.
    """
    try:
        run(["docker", "pull", "--quiet", image], timeout=timeout)
        return True
    except QuickstartError:
        return False


def secret_names(repo: Path) -> set[str]:
    """Every `secret:NAME` referenced in the repository's YAML files."""
    names: set[str] = set()
    for path in [repo / "swapyard.yaml", *sorted(repo.glob("instances/*/apps.config"))]:
        if path.exists():
            names.update(SECRET_REF.findall(path.read_text()))
    return names


def fill_secrets(store: Path, names: set[str]) -> int:
    """Write a generated value for every missing secret; returns how many were added."""
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    added = 0
    for name in sorted(names):
        path = store / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
            added += 1
    return added


def _generated(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


PROVIDERS = ("local", "lxd")  # what the quick start can run on


def write_config(
    lay: Layout,
    port: int,
    edge: str,
    admin: str,
    image_map: dict[str, str],
    provider: str = "local",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The service config of the quick start; returns it.

    `extra`: the provider's own settings (lxd: the base image's alias, so no
    deploy ever builds it) and timeouts it needs longer than the defaults.
    """
    if provider not in PROVIDERS:
        raise QuickstartError(f"--provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
    config = {
        "data_dir": str(lay.data),
        "webhook_secret_file": str(lay.base / "webhook-secret"),
        "api_token_file": str(lay.base / "api-token"),
        "public_url": f"http://127.0.0.1:{port}",
        "workers": 2,
        "repositories": {FULL_NAME: str(lay.bare)},
        # No forge here: without a token each status is recorded once as not sent.
        "github_token": None,
        "deploy": True,
        "provider": provider,
        "state_dir": str(lay.data / "state"),
        "secrets_dir": str(lay.secrets),
        "edge_listen": edge,
        "edge_admin": admin,
        **(extra or {}),
        "image_map": image_map,
        "render_https": False,
    }
    _generated(lay.base / "webhook-secret")
    _generated(lay.base / "api-token")
    lay.config.write_text(
        "# Written by scripts/quickstart; `swapyard serve --config` this file.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return config


def configured_provider(lay: Layout) -> str | None:
    """The provider named by the quick start's existing service config, or None."""
    if not lay.config.exists():
        return None
    data = yaml.safe_load(lay.config.read_text()) or {}
    return str(data.get("provider", "local"))


def lxd_settings() -> dict[str, Any]:
    """Settings for the lxd provider on this machine's daemon; builds the base image if missing.

    The daemon and its storage pool come from `scripts/setup --lxd`; a daemon
    that does not answer, or lacks the pool, is a QuickstartError saying so.
    """
    from deploy.providers.lxd.api import Endpoint, LxdClient, LxdError
    from deploy.providers.lxd.image import Recipe, compose_binary, ensure_base_image, find_image
    from deploy.providers.lxd.provider import LxdProvider

    (pool,) = [o.default for o in LxdProvider.options if o.name == "lxd_pool"]
    try:
        client = LxdClient(Endpoint.local())
        client.get(f"/1.0/storage-pools/{pool}")
        recipe = Recipe(compose_binary())
        if find_image(client, recipe.alias) is None:
            print(f"quickstart: building the base image {recipe.alias} (about a minute, once)")
        image = ensure_base_image(client, recipe)
    except LxdError as exc:
        raise QuickstartError(
            f"LXD is not ready ({exc}); `scripts/setup --lxd` starts it and makes the "
            f"{pool!r} storage pool"
        ) from None
    # several instances boot at once on a small machine: give them longer than one
    return {"lxd_image": image.alias, "ready_timeout": 300.0}


def _pid(lay: Layout) -> int | None:
    try:
        pid = int(lay.pid.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_service(lay: Layout, timeout: float = 30) -> bool:
    """SIGTERM the background service by its pid file; True when one was running."""
    pid = _pid(lay)
    if pid is None:
        lay.pid.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(lay) is not None:
        time.sleep(0.2)
    if _pid(lay) is not None:
        os.kill(pid, signal.SIGKILL)
    lay.pid.unlink(missing_ok=True)
    return True


def start_service(lay: Layout, port: int, timeout: float = 60) -> int:
    """Start `swapyard serve` detached, logging to the log file; wait for /healthz."""
    argv = [sys.executable, "-m", "service.cli.main", "serve", "--config", str(lay.config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(lay.log, "ab") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    lay.pid.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise QuickstartError(f"swapyard serve exited ({proc.returncode}); see {lay.log}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                return proc.pid
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise QuickstartError(f"swapyard serve did not answer in {timeout:g} s; see {lay.log}")


def seed_repository(lay: Layout, url: str) -> bool:
    """The bare "forge" repository with its hook, and a seeded clone; True when created."""
    from service.quickstart.githook import install

    created = not lay.bare.exists()
    if created:
        lay.bare.parent.mkdir(parents=True, exist_ok=True)
        run(["git", "init", "-q", "--bare", "-b", "main", str(lay.bare)])
    install(lay.bare, url, lay.base / "webhook-secret", FULL_NAME)
    if not lay.clone.exists():
        run(["git", "clone", "-q", str(lay.bare), str(lay.clone)])
        run(["git", "checkout", "-q", "-B", "main"], cwd=lay.clone)
        shutil.copytree(EXAMPLE, lay.clone, dirs_exist_ok=True)
        local_backups(lay)
        no_dns(lay)
        run(["git", "add", "-A"], cwd=lay.clone)
        message = (
            "Seed from swapyard's examples/config-repo, backing up to a local repository, "
            "without DNS records"
        )
        run(["git", "commit", "-qm", message], cwd=lay.clone)
    return created


EXAMPLE_BACKUPS = "s3:https://s3.eu-central-003.backblazeb2.com/example-backups"


def local_backups(lay: Layout) -> None:
    """The example backs up to B2; the quick start keeps its snapshots in `<dir>/backups`."""
    path = lay.clone / "swapyard.yaml"
    text = path.read_text()
    if EXAMPLE_BACKUPS not in text:
        raise QuickstartError(f"{path}: expected the example's backup repository to replace")
    path.write_text(text.replace(EXAMPLE_BACKUPS, str(lay.base / "backups")))


EXAMPLE_DNS = "  provider: rfc2136\n"


def no_dns(lay: Layout) -> None:
    """The example writes www's records to example.org's DNS server, which the quick start
    cannot reach: its domains are reached through the local edge, by name, instead."""
    path = lay.clone / "instances" / "www" / "apps.config"
    text = path.read_text()
    if EXAMPLE_DNS not in text:
        raise QuickstartError(f"{path}: expected the example's DNS provider to turn off")
    path.write_text(
        text.replace(EXAMPLE_DNS, "  provider: none  # the quick start has no DNS to write\n")
    )


def backup_now(lay: Layout, instance: str) -> str:
    """`swapyard backup now` on the quick start's service config; returns its output line."""
    argv = [sys.executable, "-m", "service.cli.main", "backup", "now", instance]
    return run([*argv, "--config", str(lay.config)], cwd=ROOT, timeout=300).strip()


def push(clone: Path) -> tuple[str, str]:
    """Push main; returns the sha and what the hook printed."""
    out = run(["git", "push", "origin", "HEAD:refs/heads/main"], cwd=clone)
    return run(["git", "rev-parse", "HEAD"], cwd=clone).strip(), out


def api(url: str, token: str, path: str) -> Any:
    """GET one API resource as JSON."""
    r = requests.get(f"{url}/api{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def wait_for_push(url: str, token: str, sha: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Wait until the push event of `sha` is processed and its deployments are finished."""
    deadline = time.monotonic() + timeout
    last = "no event yet"
    while time.monotonic() < deadline:
        events = [e for e in api(url, token, "/events?limit=50") if e.get("after") == sha]
        if events:
            event = api(url, token, f"/events/{events[0]['id']}")
            deployments = event.get("deployments", [])
            last = f"event {event['status']}, " + ", ".join(
                f"{d['instance']} {d['status']}" for d in deployments
            )
            if event["status"] in (EventStatus.IGNORED, EventStatus.FAILED):
                raise QuickstartError(f"push {sha[:12]}: {event['status']}: {event.get('reason')}")
            ended = DeploymentStatus.ended()
            if event["status"] == EventStatus.DISPATCHED and all(
                d["status"] in ended for d in deployments
            ):
                return list(deployments)
        time.sleep(1)
    raise QuickstartError(f"push {sha[:12]} not done after {timeout:g} s ({last})")


def probe(edge: str, domain: str, path: str = "/") -> tuple[int | str, str]:
    """GET through the edge with `domain` as Host: (status or error, page title)."""
    try:
        r = requests.get(f"http://{edge}{path}", headers={"Host": domain}, timeout=5)
    except requests.RequestException as exc:
        return type(exc).__name__, ""
    title = re.search(r"<title>(.*?)</title>", r.text, re.S)
    text = (
        title.group(1).strip() if title else r.text.strip().splitlines()[0][:60] if r.text else ""
    )
    return r.status_code, text


def app_urls(repo: Path) -> list[tuple[str, str, str]]:
    """(instance/app, domain, path) of every production app of the clone."""
    from schemas import load_repo

    out: list[tuple[str, str, str]] = []
    for inst in load_repo(str(repo)).instances:
        if inst.project == "production" and inst.state == "present":
            for app in inst.apps:
                path = (app.path or "/").rstrip("/") + "/"
                out.extend((f"{inst.name}/{app.name}", d, path) for d in app.domains)
    return out
