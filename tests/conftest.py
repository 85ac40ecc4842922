"""Fixtures and rules shared by every test folder.

Two rules live here. In CI (SWAPYARD_NO_SKIPS=1) a skipped test fails the run:
CI installs every tool, so a skip there is a missing install step. And the
conformance layer (tests marked `conformance`: output held against upstream
reference data such as the official Ignition and compose schemas, or deliveries
captured from real forges) reads that data from shared/reference beside the
repository, never from the repository itself; on a clone without it the layer
is one skipped item naming where the data would be, and CI fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.dns.servers import bind_server, dns_server, pdns_server

__all__ = ["bind_server", "dns_server", "pdns_server"]  # real BIND 9 and PowerDNS, for any test

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def shared_dir() -> Path:
    """The upstream reference data beside the repository (never copied into it)."""
    return Path(os.environ.get("SWAPYARD_SHARED", REPO.parent / "shared")).resolve()


def reference_dir() -> Path:
    """Where the conformance layer reads upstream reference data: shared/reference."""
    return shared_dir() / "reference"


def reference(relative: str) -> Path:
    """A file under shared/reference, for a test marked `conformance`.

    Without the folder the whole layer was already set aside at collection (one
    skip, see `pytest_collection_modifyitems`); a file missing from a folder that
    exists is a broken checkout of the reference data, and fails the test.
    """
    path = reference_dir() / relative
    if not path.exists():
        pytest.fail(f"reference file {path} is missing from {reference_dir()}", pytrace=False)
    return path


class MissingReferenceData(pytest.Item):
    """Stands for the whole conformance layer when the reference data is absent: one skip,
    one line saying where the data would be (and in CI, where a skip fails the run, one
    failure)."""

    def __init__(self, *, tests: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tests = tests

    def runtest(self) -> None:
        pytest.skip(
            f"conformance layer ({self.tests} tests) not run: no reference data at "
            f"{reference_dir()} (put shared/ beside the repository or set SWAPYARD_SHARED)"
        )

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path(__file__), None, "conformance layer"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Set the conformance layer aside, as one item that skips, when shared/reference is
    missing (a plain clone): its tests have no oracle but that upstream data."""
    layer = [item for item in items if item.get_closest_marker("conformance")]
    if not layer or reference_dir().is_dir():
        return
    aside = {id(item) for item in layer}
    items[:] = [item for item in items if id(item) not in aside]
    config.hook.pytest_deselected(items=layer)
    here = Path(os.path.relpath(__file__, config.rootpath)).as_posix()
    items.append(
        MissingReferenceData.from_parent(
            layer[0].session, name="conformance", nodeid=f"{here}::conformance", tests=len(layer)
        )
    )


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `swapyard` command line in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "service.cli.main", *args],
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
