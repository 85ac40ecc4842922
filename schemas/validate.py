"""Validate a config repository and build the model renderers consume.

    load_repo(path)  ->  RepoConfig      (raises ConfigError with every problem)

Validation runs in layers, and reports everything it finds, not only the
first problem:

1. what may be read at all (`repofiles`: no links, sizes and counts within
   `Limits`), YAML syntax (with line and column), duplicate keys, nodes and
   nesting within `Limits`;
2. `swapyard.yaml` against its schema; projects select instances by name;
3. each `apps.config`, with the repo-wide and project defaults merged under
   it, against the cerberus schema; catalog settings against the catalog
   entry's own schema;
4. cross-checks inside an instance (app and service names, custom vs
   catalog fields, shipped files exist, backup and DNS completeness, volume
   label length) and across a project (one domain and path, one instance).

A problem in a value that came from a defaults file is reported against that
file. Nothing here touches the network or the secret store.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from schemas import build
from schemas.apps_config import APPS_CONFIG, REPO_CONFIG
from schemas.catalog import CATALOG
from schemas.errors import ConfigError, Problem
from schemas.limits import DEFAULT_LIMITS, Limits
from schemas.model import Instance, Project, RepoConfig
from schemas.repofiles import (
    DIR_LINK,
    count_files,
    instance_entries,
    present,
    read_config_file,
    read_shipped_files,
)
from schemas.rules import validator_for
from schemas.yamlfile import YamlDocument, field_path, parse_yaml

APPS_FILE = "apps.config"
REPO_FILE = "swapyard.yaml"


def deep_merge(base: Any, over: Any) -> Any:
    """`over` on top of `base`: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(over)


class _Source:
    """Where a merged value came from: the instance file, or a defaults block."""

    def __init__(self, layers: list[tuple[str, YamlDocument, tuple[Any, ...]]]):
        self.layers = layers  # highest precedence first: (filename, doc, path prefix)

    def within(self, *path: Any) -> _Source:
        """The same layers, for a sub-document at `path` (e.g. one app's settings)."""
        return _Source([(f, d, (*p, *path)) for f, d, p in self.layers])

    def locate(self, path: tuple[Any, ...]) -> tuple[str, int | None, tuple[Any, ...]]:
        """(file, line, path in that file) of the layer that set `path`."""
        for filename, doc, prefix in self.layers:
            if doc.has((*prefix, *path)):
                return filename, doc.line((*prefix, *path)), (*prefix, *path)
        filename, doc, prefix = self.layers[0]
        return filename, doc.line((*prefix, *path)), (*prefix, *path)


def _validate_against(
    schema: dict[str, Any], data: Any, source: _Source
) -> tuple[dict[str, Any] | None, list[Problem]]:
    from schemas.messages import problems_from  # late: messages imports the schema constants

    validator = validator_for(schema)
    if validator.validate(data):
        return validator.document, []
    problems = []
    for problem in problems_from(validator._errors, schema, "", YamlDocument({}, {})):
        where, line, path = source.locate(_parse_field(problem.field))
        problems.append(Problem(where, line, field_path(path), problem.message))
    return None, problems


def _parse_field(text: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


class RepoLoader:
    """Reads one config repository; `load()` returns the model or raises ConfigError."""

    def __init__(
        self,
        root: Path,
        only: str | None = None,
        known_secrets: Collection[str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self.root = root
        self.only = only
        self.known_secrets = known_secrets
        self.limits = limits
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def load(self) -> RepoConfig:
        """The whole repository's model; raises ConfigError listing every problem."""
        repo, problems = self.check()
        if problems:
            raise ConfigError(problems)
        return repo

    def check(self) -> tuple[RepoConfig, list[Problem]]:
        """The model of every valid instance, and the problems of the others.

        For the worker, which must not let one broken instance stop the rest:
        a problem in `swapyard.yaml` leaves no instance; a domain claimed by two
        instances leaves out both.
        """
        repo_doc, repo_data = self._repo_file()
        projects = self._projects(repo_data)
        instances: list[Instance] = []
        for name, doc in self._instance_files():
            chosen = [p for p in projects if p.selects(name)]
            if not chosen:
                self.warnings.append(f"instances/{name}: not selected by any project; not deployed")
                chosen_layers: list[tuple[Project | None, dict[str, Any]]] = [(None, {})]
            else:
                chosen_layers = [
                    (p, repo_data.get("projects", {}).get(p.name) or {}) for p in chosen
                ]
            for project, project_data in chosen_layers:
                instance = self._instance(name, doc, project, project_data, repo_doc, repo_data)
                if instance is not None and project is not None:
                    instances.append(instance)
        conflicts = build.cross_project_checks(instances)
        self.problems.extend(conflicts)
        broken = {p.file for p in self.problems}
        if REPO_FILE in broken:
            instances = []
        instances = [i for i in instances if i.source not in broken]
        repo = RepoConfig(
            root=str(self.root),
            projects=tuple(projects),
            instances=tuple(sorted(instances, key=lambda i: (i.project, i.name))),
            warnings=tuple(self.warnings),
        )
        return repo, sorted(set(self.problems))

    def projects(self) -> list[Project]:
        """Only the projects `swapyard.yaml` declares; raises ConfigError if it is invalid."""
        _, repo_data = self._repo_file()
        projects = self._projects(repo_data)
        if self.problems:
            raise ConfigError(self.problems)
        return projects

    def _read(self, path: Path) -> YamlDocument | None:
        rel = path.relative_to(self.root).as_posix()
        text, problems = read_config_file(self.root, rel, self.limits)
        if text is None:
            self.problems.extend(problems)
            return None
        try:
            return parse_yaml(text, rel, self.limits)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def _repo_file(self) -> tuple[YamlDocument, dict[str, Any]]:
        path = self.root / REPO_FILE
        empty = YamlDocument({}, {})
        if not present(path):
            return empty, {}
        doc = self._read(path)
        if doc is None:
            return empty, {}
        if doc.data is None:
            return empty, {}
        validator = validator_for(REPO_CONFIG)
        if not validator.validate(doc.data, normalize=False) or not isinstance(doc.data, dict):
            from schemas.messages import problems_from

            self.problems.extend(problems_from(validator._errors, REPO_CONFIG, REPO_FILE, doc))
            return empty, {}
        return doc, doc.data

    def _projects(self, repo_data: dict[str, Any]) -> list[Project]:
        declared = repo_data.get("projects") or {"production": {"branches": ["main"]}}
        projects = []
        claimed: dict[str, str] = {}
        for name in sorted(declared):
            spec = declared[name]
            for branch in spec["branches"]:
                if branch in claimed:
                    self.problems.append(
                        Problem(
                            REPO_FILE,
                            None,
                            f"projects.{name}.branches",
                            f"branch {branch!r} already deploys to project {claimed[branch]!r}; "
                            "expected each branch in one project",
                        )
                    )
                claimed[branch] = name
            projects.append(
                Project(name, tuple(spec["branches"]), tuple(spec.get("instances") or ["*"]))
            )
        return projects

    def _instance_files(self) -> Iterator[tuple[str, YamlDocument]]:
        base = self.root / "instances"
        if not base.is_dir():
            self.problems.append(
                Problem(
                    ".", None, "", f"no instances/ directory; expected instances/<name>/{APPS_FILE}"
                )
            )
            return
        names, problems = instance_entries(self.root, self.limits)
        problems = problems or count_files(self.root, names, self.limits)
        self.problems.extend(problems)
        if problems:
            return
        if self.only is not None:
            names = [n for n in names if n == self.only]
        for name in names:
            where = f"instances/{name}"
            if (base / name).is_symlink():
                self.problems.append(Problem(where, None, "", DIR_LINK))
                continue
            if not (base / name).is_dir():
                continue  # a stray file beside the instance directories
            path = base / name / APPS_FILE
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", name):
                self.problems.append(
                    Problem(
                        where,
                        None,
                        "",
                        "instance directory name: expected lowercase letters, digits and '-', "
                        "starting with a letter, at most 40",
                    )
                )
                continue
            if not present(path):
                self.problems.append(Problem(where, None, "", f"{APPS_FILE} is missing"))
                continue
            doc = self._read(path)
            if doc is None:
                continue
            if not isinstance(doc.data, dict):
                found = "an empty file" if doc.data is None else f"a {type(doc.data).__name__}"
                self.problems.append(
                    Problem(
                        f"instances/{name}/{APPS_FILE}",
                        1,
                        "",
                        f"found {found}; expected a mapping with at least `apps:`",
                    )
                )
                continue
            yield name, doc

    def _instance(
        self,
        name: str,
        doc: YamlDocument,
        project: Project | None,
        project_data: dict[str, Any],
        repo_doc: YamlDocument,
        repo_data: dict[str, Any],
    ) -> Instance | None:
        filename = f"instances/{name}/{APPS_FILE}"
        layers: list[tuple[str, YamlDocument, tuple[Any, ...]]] = [(filename, doc, ())]
        merged: Any = {}
        for defaults, prefix in (
            (repo_data.get("defaults") or {}, ("defaults",)),
            (
                project_data.get("defaults") or {} if project else {},
                ("projects", project.name if project else "", "defaults"),
            ),
        ):
            clean = {k: v for k, v in defaults.items() if v is not None}
            merged = deep_merge(merged, clean)
            layers.insert(1, (REPO_FILE, repo_doc, prefix))
        merged = deep_merge(merged, doc.data)
        source = _Source(layers)
        config, problems = _validate_against(APPS_CONFIG, merged, source)
        # Catalog settings are checked even when the rest failed, to report all at once.
        problems.extend(self._catalog_settings(config or merged, source))
        if config is None or problems:
            self.problems.extend(problems)
            return None
        files, problems = read_shipped_files(self.root, name, self.limits)
        if problems:
            self.problems.extend(problems)
            return None
        instance_problems = build.instance_checks(config, files, source)
        if self.known_secrets is not None:
            instance_problems += build.secret_checks(config, self.known_secrets, source)
        if instance_problems:
            self.problems.extend(instance_problems)
            return None
        return build.instance(project.name if project else "", name, filename, config, files)

    def _catalog_settings(self, config: dict[str, Any], source: _Source) -> list[Problem]:
        problems = []
        apps = config.get("apps") if isinstance(config, dict) else None
        for index, app in enumerate(apps if isinstance(apps, list) else []):
            if not isinstance(app, dict) or not isinstance(app.get("catalog"), str):
                continue
            entry = CATALOG.get(app["catalog"])
            if entry is None:
                continue
            raw = app.get("settings", {})
            settings, found = _validate_against(
                entry.settings,
                raw if raw is not None else {},
                source.within("apps", index, "settings"),
            )
            if settings is None:
                problems.extend(found)
            else:
                app["settings"] = settings
        return problems


def find_root(path: Path) -> tuple[Path, str | None]:
    """A repo root, or an instance directory -> (its repo root, its name)."""
    path = path.resolve()
    if (path / APPS_FILE).is_file() and path.parent.name == "instances":
        return path.parent.parent, path.name
    return path, None


def load_projects(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> list[Project]:
    """The projects of the repository at `path` (default: production from main)."""
    return RepoLoader(Path(path).resolve(), limits=limits).projects()


def check_repo(
    path: str | Path,
    known_secrets: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[RepoConfig, list[Problem]]:
    """Like `load_repo`, but returns the valid instances beside the problems of the rest."""
    root, only = find_root(Path(path))
    if not root.is_dir():
        return RepoConfig(str(path), (), ()), [Problem(str(path), None, "", "no such directory")]
    return RepoLoader(root, only, known_secrets, limits).check()


def load_repo(
    path: str | Path,
    known_secrets: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> RepoConfig:
    """Validate the repository (or one instance directory) at `path` and build its model.

    With `known_secrets` (the names the secret store holds), every `secret:NAME`
    reference must name one of them. Everything read is bounded by `limits`.
    """
    root, only = find_root(Path(path))
    if not root.is_dir():
        raise ConfigError([Problem(str(path), None, "", "no such directory")])
    return RepoLoader(root, only, known_secrets, limits).load()
