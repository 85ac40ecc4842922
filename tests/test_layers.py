"""Imports run one way: service -> (handlers, deploy) -> (renderers, schemas).

handlers/ decides what to do and service/ has deploy/ do it (the deployer is
handed to the pipeline), so handlers/ imports nothing of deploy/ either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "schemas": {"service", "handlers", "deploy", "renderers"},
    "renderers": {"service", "handlers", "deploy"},
    "deploy": {"service", "handlers"},
    "handlers": {"service", "deploy"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {sorted(imported_packages(path) & FORBIDDEN[package])}"
        for path in sorted((REPO / package).rglob("*.py"))
        if imported_packages(path) & FORBIDDEN[package]
    ]
    assert offenders == []


def test_importing_the_service_opens_nothing() -> None:
    import threading

    before = threading.active_count()
    import service
    import service.worker  # noqa: F401

    assert threading.active_count() == before
