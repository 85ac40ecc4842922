"""Fixtures for backup tests: restic repositories (local and S3 on moto), a deployed instance.

The Docker fixtures (engine, test image, local provider with full cleanup)
are the deploy tests'; the instance is deployed through the real swap
engine. moto's S3 server runs once per session on a loopback port and is
stopped at the end.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy.backup.journal import BackupJournal
from deploy.backup.restic import ResticRepo
from deploy.providers.local.provider import LocalProvider
from deploy.spec import DeploySpec, VolumeSpec
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy import conftest as deploy_fixtures
from tests.deploy.fixtures import make_ignition, make_spec

# The deploy tests' fixtures: Docker engine, test image, local provider with cleanup.
docker_client = deploy_fixtures.docker_client
test_image = deploy_fixtures.test_image
project = deploy_fixtures.project
provider = deploy_fixtures.provider
ignition_v1 = deploy_fixtures.ignition_v1
free_port = deploy_fixtures.free_port

RESTIC = shutil.which("restic")


@pytest.fixture(autouse=True)
def _needs_restic() -> None:
    if RESTIC is None:
        pytest.skip("restic is not installed (apt-get install restic)")


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_hex(8)


@pytest.fixture
def local_repo(tmp_path: Path, password: str) -> ResticRepo:
    repo = ResticRepo(str(tmp_path / "repo"), {"RESTIC_PASSWORD": password})
    repo.init_if_missing()
    return repo


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str
    env: dict[str, str]

    def url(self, prefix: str = "") -> str:
        return f"s3:{self.endpoint}/{self.bucket}{prefix}"


@contextlib.contextmanager
def moto_server(host: str) -> Iterator[S3]:
    """moto's S3 server on `host` (a free port there) with one bucket, stopped at the end."""
    pytest.importorskip("moto.server", reason="pip install 'moto[server]'")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                requests.get(endpoint, timeout=1)
                break
            time.sleep(0.2)
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-" + secrets.token_hex(4),
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="backups")
        yield S3(endpoint, "backups", env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3]:
    """moto's S3 server on a loopback port, with one bucket; stopped after the session."""
    with moto_server("127.0.0.1") as s3:
        yield s3


def port_closed() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deployed:
    """One deployed fixture instance (`demo`: web + writer `notes`) and its journals."""

    def __init__(self, provider: LocalProvider, db: str, project: str, spec: DeploySpec):
        self.provider = provider
        self.db = db
        self.project = project
        self.spec = spec
        self.swaps = SqlJournal(db)
        self.history = BackupJournal(self.swaps.engine)
        self.engine = SwapEngine(provider, self.swaps, ready_timeout=60, health_timeout=20)
        out = self.engine.deploy(spec)
        assert out.status == "success", out.summary
        assert out.instance_id
        self.instance_id = out.instance_id

    def get(self, host: str, path: str = "/") -> requests.Response:
        edge = self.provider.edge.listen[0]
        return requests.get(f"http://{edge}{path}", headers={"Host": host}, timeout=5)

    def writers_running(self) -> list[str]:
        return [
            c.labels.get("com.docker.compose.service", "")
            for c in self.provider.projects.containers(self.instance_id)
            if c.labels.get("org.swapyard.writer") == "true" and c.status == "running"
        ]

    @property
    def volume_path(self) -> Path:
        volume = self.provider.get_volume(self.spec.volume.id)
        assert volume is not None
        return self.provider.volume_path(volume)


@pytest.fixture
def deployed(provider: LocalProvider, tmp_path: Path, project: str, ignition_v1: bytes) -> Deployed:
    spec = make_spec(project, ignition_v1, "a" * 40)
    return Deployed(provider, f"sqlite:///{tmp_path / 'swapyard.db'}", project, spec)


@pytest.fixture
def deployed_btrfs(
    provider: LocalProvider, tmp_path: Path, project: str, ignition_v1: bytes
) -> Deployed:
    if not shutil.which("mkfs.btrfs") or not provider.volumes.use_loop:
        pytest.skip("needs btrfs-progs and loop devices (root)")
    spec = make_spec(project, ignition_v1, "a" * 40)
    volume = VolumeSpec(spec.volume.id, "sydata", 512 << 20, "btrfs")
    return Deployed(
        provider, f"sqlite:///{tmp_path / 'swapyard.db'}", project, replace(spec, volume=volume)
    )


@pytest.fixture
def deployed_slow(
    provider: LocalProvider, tmp_path: Path, project: str, test_image: str
) -> Deployed:
    """The fixture instance whose writer `notes` listens 2 s after each start (`.hold`: never)."""
    spec = make_spec(project, make_ignition(test_image, "v1", writer_delay=2), "a" * 40)
    return Deployed(provider, f"sqlite:///{tmp_path / 'swapyard.db'}", project, spec)


def tree(root: Path, skip: tuple[str, ...] = (".swapyard-snapshots", "lost+found")) -> dict:
    """Every file under `root` with its bytes, every directory as None (byte-for-byte compare)."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip:
            continue
        out[str(rel)] = None if path.is_dir() else path.read_bytes()
    return out
