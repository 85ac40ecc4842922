"""Imports run one way, between the top-level packages and inside them.

Between packages: service -> (handlers, deploy) -> (renderers, schemas).
handlers/ decides what to do and service/ has deploy/ do it (the deployer is
handed to the pipeline), so handlers/ imports nothing of deploy/ either.

Inside them, each rule keeps a seam where a new part plugs in:
- a provider driver imports only the provider contract (`deploy.providers.base`,
  `deploy.providers.types`) and the drivers' toolkits (`deploy.providers.commands`, the
  edge, reaching inside a remote instance), never an engine nor another driver, so a
  new driver is one new folder; a toolkit imports only the contract and other toolkits;
- the engines (swap, backup, and what they share) import no driver, only the
  contract, so every driver runs under the same engine;
- swap and backup share the step runner (`deploy.steps`), the live record and
  the instance's lock (`deploy.live`), the deploy spec and the maintenance page,
  never each other; what they share imports neither;
- receiving a delivery (`handlers.intake`) and acting on a commit
  (`handlers.gitops`) know nothing of each other: the service's worker joins them;
- in service/, storage knows no one, the forge clients know storage, the worker
  knows both, and the web app (the composition root) knows all three; the CLI and
  the quick start sit on top;
- inside the worker, the parts (event dispatcher, deployment runner, deployer,
  backups, inbox, ...) know neither the threads that drive them
  (`service.worker.threads`) nor the build that wires them (`service.worker.build`): each
  gets its collaborators through its constructor, so a part is replaced or tested
  alone, and the worker drives what it is handed without building any of it.
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

WORKER_PARTS = tuple(
    f"service.worker.{name}"
    for name in (
        "backups",
        "deployer",
        "deployments",
        "dispatch",
        "doorbell",
        "events",
        "inbox",
        "leader",
        "missedpushes",
        "workspace",
    )
)
CONTRACT = ("deploy.providers.base", "deploy.providers.runner", "deploy.providers.types")
# What drivers share beside the contract; a toolkit imports only the contract and toolkits.
TOOLKITS = (
    "deploy.providers.commands",
    "deploy.providers.edge",
    "deploy.providers.remote",
    "deploy.providers.rootfs",
)
SHARED = ("deploy.steps", "deploy.live", "deploy.maintenance", "deploy.spec")
ENGINES = ("deploy.swap", "deploy.backup", *SHARED)

# (modules a rule applies to, imports they may not make, imports allowed despite that)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "drivers import nothing of the engines": (
        ("deploy.providers",),
        ENGINES,
        (),
    ),
    "toolkits import no driver": (
        TOOLKITS,
        ("deploy.providers",),
        (*CONTRACT, *TOOLKITS),
    ),
    "engines import no driver, only the provider contract": (
        ENGINES,
        ("deploy.providers",),
        CONTRACT,
    ),
    "swap knows nothing of backup": (("deploy.swap",), ("deploy.backup",), ()),
    "backup knows nothing of swap": (("deploy.backup",), ("deploy.swap",), ()),
    "what swap and backup share knows neither": (SHARED, ("deploy.swap", "deploy.backup"), ()),
    "intake knows nothing of gitops": (("handlers.intake",), ("handlers.gitops",), ()),
    "gitops knows nothing of intake": (("handlers.gitops",), ("handlers.intake",), ()),
    "storage knows no other part of the service": (
        ("service.store",),
        ("service.web", "service.worker", "service.forge", "service.cli", "service.quickstart"),
        (),
    ),
    "forge clients know storage only": (
        ("service.forge",),
        ("service.web", "service.worker", "service.cli", "service.quickstart"),
        (),
    ),
    "the worker serves no pages and runs no command": (
        ("service.worker",),
        ("service.web", "service.cli", "service.quickstart"),
        (),
    ),
    "the worker's parts know neither its threads nor the build": (
        WORKER_PARTS,
        ("service.worker.threads", "service.worker.build"),
        (),
    ),
    "the worker drives its parts and builds none": (
        ("service.worker.threads",),
        ("service.worker.build",),
        (),
    ),
    "the web app runs no command": (("service.web",), ("service.cli", "service.quickstart"), ()),
    "settings and secrets stand alone": (
        ("service.settings", "service.secrets"),
        ("service.",),
        ("service.settings", "service.secrets"),
    ),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p if p.endswith(".") else p + ".") for p in prefixes)


def sources() -> list[Path]:
    return [
        path
        for package in ("schemas", "renderers", "deploy", "handlers", "service")
        for path in sorted((REPO / package).rglob("*.py"))
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    def tops(path: Path) -> set[str]:
        return {name.split(".")[0] for name in imported_modules(path)}

    offenders = [
        f"{path.relative_to(REPO)} imports {sorted(tops(path) & FORBIDDEN[package])}"
        for path in sorted((REPO / package).rglob("*.py"))
        if tops(path) & FORBIDDEN[package]
    ]
    assert offenders == []


@pytest.mark.parametrize("rule", sorted(RULES))
def test_inner_seams_hold(rule: str) -> None:
    applies, forbidden, allowed = RULES[rule]
    offenders = []
    for path in sources():
        name = module_name(path)
        if not under(name, applies):
            continue
        for imported in sorted(imported_modules(path)):
            if under(imported, forbidden) and not under(imported, allowed):
                offenders.append(f"{path.relative_to(REPO)} imports {imported}")
    assert offenders == [], rule


def test_the_rules_see_every_package() -> None:
    """A rule naming a package that does not exist guards nothing: keep the names current."""
    names = {module_name(path) for path in sources()}
    for rule, (applies, forbidden, _allowed) in RULES.items():
        for prefix in applies + forbidden:
            assert any(under(n, (prefix,)) for n in names), f"{rule}: no module under {prefix}"


def test_a_driver_imports_no_other_driver() -> None:
    """Each driver folder under deploy/providers/ reaches the others only through the contract
    and the toolkits (the registry finds drivers by name), so drivers come and go one folder
    at a time. A driver folder is one with a `provider.py`."""
    folders = sorted(p.parent for p in (REPO / "deploy" / "providers").glob("*/provider.py"))
    assert {f.name for f in folders} >= {"local", "memory", "lxd"}
    offenders = []
    for folder in folders:
        own = f"deploy.providers.{folder.name}"
        for path in sorted(folder.rglob("*.py")):
            for imported in sorted(imported_modules(path)):
                allowed = (own, *CONTRACT, *TOOLKITS)
                if under(imported, ("deploy.providers",)) and not under(imported, allowed):
                    offenders.append(f"{path.relative_to(REPO)} imports {imported}")
    assert offenders == []


def test_importing_the_service_opens_nothing() -> None:
    import threading

    before = threading.active_count()
    import service
    import service.worker.build  # noqa: F401  (the wiring, too: it builds nothing on import)

    assert threading.active_count() == before


def test_packages_hold_only_a_docstring() -> None:
    """A package's `__init__.py` says what the folder holds and imports nothing: no
    re-exports, so every import names the module a thing lives in."""
    offenders = []
    for package in ("deploy", "handlers", "service"):
        for init in sorted((REPO / package).rglob("__init__.py")):
            body = ast.parse(init.read_text()).body
            if not body or not (
                isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            ):
                offenders.append(f"{init.relative_to(REPO)}: no docstring")
            elif body[1:]:
                offenders.append(f"{init.relative_to(REPO)}: more than a docstring")
    assert offenders == []
