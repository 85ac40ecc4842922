"""The offline commands (`validate`, `render`, `plan`, `schema`) load none of the service's stack.

They run on a laptop or in a forge's CI with nothing but the config repository, so
starting them must not import Flask, SQLAlchemy, APScheduler or the Docker client:
each costs start-up time and none of them is needed to check a config.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SERVICE_STACK = ("flask", "werkzeug", "sqlalchemy", "alembic", "apscheduler", "docker", "git")

PROBE = f"""
import json, sys
from service.cli.main import run
code = run(sys.argv[1:])
loaded = [m for m in {SERVICE_STACK!r} if m in sys.modules]
print(json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["validate", "examples/config-repo"], 0),
        (["schema", "--out", "{tmp}/schema.json"], 0),
        (["render", "examples/config-repo", "--out", "{tmp}/out"], 0),
        (["render", "examples/config-repo", "--format", "cloud-init", "--out", "{tmp}/ci"], 0),
        (["plan", "examples/config-repo", "--against", "{tmp}/nothing"], 1),  # 1: changes
        (["--help"], 0),
    ],
    ids=lambda case: case[0] if isinstance(case, str) else None,
)
def test_offline_commands_import_no_service_stack(
    argv: list[str], code: int, tmp_path: Path
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["loaded"] == [], f"`swapyard {argv[0]}` imported {report['loaded']}"
    assert report["code"] == code, done.stderr
