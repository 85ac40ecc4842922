"""deploy/ documents every public function (its import direction: tests/test_layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_every_public_function_has_a_docstring() -> None:
    missing = []
    for path in DEPLOY.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            public = isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
            if public and ast.get_docstring(node) is None:
                missing.append(f"{path.relative_to(DEPLOY.parent)}:{node.lineno} {node.name}")
    assert missing == []
