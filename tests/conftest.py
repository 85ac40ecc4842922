"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def shared_dir() -> Path:
    """The upstream reference data beside the repository (never copied into it)."""
    return Path(os.environ.get("SWAPYARD_SHARED", REPO.parent / "shared")).resolve()


def reference(relative: str = "") -> Path:
    """A file or folder under shared/reference, or skip the test saying where it looked
    (in CI a skip fails the run, with this reason)."""
    path = shared_dir() / "reference" / relative
    if not path.exists():
        pytest.skip(f"reference data not found at {path} (set SWAPYARD_SHARED)")
    return path


@pytest.fixture
def shared() -> Path:
    return reference()


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `swapyard` command line in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (SWAPYARD_NO_SKIPS=1) a skipped test fails the run: CI installs every tool,
    so a skip there means a missing install step, not a missing feature."""
    if os.environ.get("SWAPYARD_NO_SKIPS") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            print(f"\nskipped in CI: {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
