"""deploy/ imports nothing from service/ or handlers/ (it is handed a journal, not the app)."""

from __future__ import annotations

import ast
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_deploy_does_not_import_service_or_handlers() -> None:
    offenders = {
        f"{path.relative_to(DEPLOY.parent)}: {name}"
        for path in DEPLOY.rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in ("service", "handlers")
    }
    assert offenders == set()


def test_every_public_function_has_a_docstring() -> None:
    missing = []
    for path in DEPLOY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            public = isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
            if public and ast.get_docstring(node) is None:
                missing.append(f"{path.relative_to(DEPLOY.parent)}:{node.lineno} {node.name}")
    assert missing == []
