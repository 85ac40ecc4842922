"""The one seam between the worker and validate/render/plan/deploy.

`targets()` decides which instances a commit concerns; `run_instance()` takes
one instance of a checked-out tree through validation (with the whole
repository, so cross-instance checks apply), a redacted render (its digest
and artifact digests go to the history) and the executor, and returns an
`Outcome` that never raises: one instance's failure never stops the others.
`run_plan()` is the plan-only path for unmapped branches and pull requests
(status context `swapyard/plan`).

The executor (`service.work.deployer.Deployer`) is handed in, so this module does
not depend on a provider; without one, deployments end as plan only.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.gitops.changes import Change
from renderers import RenderOptions, render_instance
from schemas import (
    DEFAULT_LIMITS,
    ConfigError,
    Instance,
    Limits,
    Problem,
    RepoConfig,
    SwapyardError,
    check_repo,
    load_projects,
    load_repo,
)
from schemas.repofiles import count_files, instance_entries, present

DESCRIPTION_LIMIT = 140
CHECKED_COMMITS = 8


def clip(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class StepRecord:
    name: str
    status: str
    started_at: float
    finished_at: float
    log: str = ""


@dataclass
class Outcome:
    instance: str
    project: str | None
    state: str  # success | failure | error
    action: str  # validated | planned | removed | invalid | ...
    summary: str
    digest: str | None = None
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def description(self) -> str:
        return clip(self.summary)


@dataclass(frozen=True)
class Targets:
    project: str | None  # None: plan only (unmapped branch, pull request)
    names: tuple[str, ...]
    note: str
    problem: str | None = None  # swapyard.yaml cannot be read: nothing can be targeted


@dataclass(frozen=True)
class Execution:
    """What the deploy engine did with one instance."""

    state: str  # success | failure | error
    action: str  # create | replace | noop | destroy | ...
    summary: str
    steps: tuple[StepRecord, ...] = ()  # its own steps for the history (e.g. `wait_lock`)


Executor = Callable[[Instance, str], Execution]  # (instance, commit) -> what was done


def mapped_branches(tree: Path, limits: Limits = DEFAULT_LIMITS) -> set[str]:
    """The branches that `swapyard.yaml` in `tree` maps to a project (none if unreadable)."""
    try:
        projects = load_projects(tree, limits)
    except ConfigError:
        return set()
    return {b for p in projects for b in p.branches}


def targets(
    tree: Path, branch: str | None, change: Change, limits: Limits = DEFAULT_LIMITS
) -> Targets:
    try:
        projects = load_projects(tree, limits)
    except ConfigError as exc:
        return Targets(None, (), change.note, problem="; ".join(str(p) for p in exc.problems))
    project = next((p for p in projects if branch is not None and branch in p.branches), None)
    present_names: list[str] = []
    if (tree / "instances").is_dir():
        present_names, problems = instance_entries(tree, limits)
        problems = problems or count_files(tree, present_names, limits)
        if problems:  # too many to queue a deployment each: one failure says why
            return Targets(None, (), change.note, problem=str(problems[0]))
    base = tree / "instances"
    present_names = [  # a link is kept: validation refuses it, and the status says so
        n for n in present_names if (base / n).is_symlink() or present(base / n / "apps.config")
    ]
    candidates = set(present_names) if change.everything else set(change.names)
    if project is None:
        why = f"branch {branch} is not mapped to a project" if branch else "pull request"
        return Targets(None, tuple(sorted(candidates)), f"{why}; validated and planned only")
    chosen = sorted(n for n in candidates if project.selects(n))
    return Targets(project.name, tuple(chosen), change.note)


class Pipeline:
    def __init__(
        self,
        executor: Executor | None = None,
        render_options: Any = None,
        limits: Limits = DEFAULT_LIMITS,
    ):
        self.executor = executor
        self.render_options = render_options
        self.limits = limits
        # A push touching many instances validates its commit once, not once per instance.
        self._checked: OrderedDict[str, tuple[RepoConfig, list[Problem]]] = OrderedDict()
        self._checked_lock = threading.Lock()

    def run_instance(self, tree: Path, project: str, name: str, commit: str = "") -> Outcome:
        """Validate, render and (with an executor) deploy one instance; never raises."""
        outcome = Outcome(name, project, "success", "validated", "")
        directory = tree / "instances" / name
        if not directory.is_symlink() and not present(directory / "apps.config"):
            outcome.action = "removed"
            outcome.summary = (
                f"instances/{name} removed: nothing destroyed (set state: absent to destroy)"
            )
            return outcome
        try:
            self._run(tree, project, name, outcome, commit)
        except ConfigError as exc:
            more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            outcome.state, outcome.action = "failure", "invalid"
            outcome.summary = clip(str(exc.problems[0]), DESCRIPTION_LIMIT - len(more)) + more
        except SwapyardError as exc:
            outcome.state, outcome.summary = "failure", str(exc)
        except Exception as exc:  # one instance's bug must not stop the batch
            outcome.state = "error"
            outcome.summary = f"internal error: {type(exc).__name__}: {exc}"
            outcome.steps.append(
                StepRecord("crash", "error", time.time(), time.time(), traceback.format_exc())
            )
        return outcome

    def _step(self, outcome: Outcome, name: str, fn: Callable[[], Any]) -> Any:
        step = StepRecord(name, "running", time.time(), 0.0)
        outcome.steps.append(step)
        try:
            result = fn()
        except BaseException as exc:
            step.status, step.finished_at, step.log = "failed", time.time(), str(exc)
            raise
        step.status, step.finished_at = "done", time.time()
        return result

    def _run(self, tree: Path, project: str, name: str, outcome: Outcome, commit: str) -> None:
        instance = self._step(
            outcome, "validate", lambda: self._validate(tree, project, name, commit)
        )
        if instance is None:
            outcome.action = "skipped"
            outcome.summary = f"instances/{name} is not part of project {project}"
            return
        outcome.steps[-1].log = f"validated {instance.source}"
        if instance.state == "present":
            artifacts = self._step(
                outcome, "render", lambda: render_instance(instance, self._options())
            )
            outcome.digest = artifacts.digest
            outcome.steps[-1].log = "\n".join(f"{p} {d}" for p, d in artifacts.digests.items())
        outcome.action = "planned"
        if self.executor is None:
            digest = f"rendered {outcome.digest[:19]}" if outcome.digest else "state: absent"
            outcome.summary = f"validated, {digest}; plan only (no deploy)"
            return
        executor = self.executor
        done = self._step(outcome, "deploy", lambda: executor(instance, commit))
        outcome.steps[-1].log = done.summary
        outcome.steps[-1:-1] = done.steps  # what happened inside, listed before the outcome
        outcome.state, outcome.action, outcome.summary = done.state, done.action, done.summary
        if done.state != "success":
            outcome.steps[-1].status = "failed"

    def _check(self, tree: Path, commit: str) -> tuple[RepoConfig, list[Problem]]:
        """`check_repo` of the tree, remembered for the last few commits."""
        with self._checked_lock:
            if commit and commit in self._checked:
                self._checked.move_to_end(commit)
                return self._checked[commit]
        result = check_repo(tree, limits=self.limits)
        if commit:
            with self._checked_lock:
                self._checked[commit] = result
                while len(self._checked) > CHECKED_COMMITS:
                    self._checked.popitem(last=False)
        return result

    def _validate(self, tree: Path, project: str, name: str, commit: str) -> Instance | None:
        """The instance, validated with the whole repository (cross-instance checks apply)."""
        repo, problems = self._check(tree, commit)
        own = [p for p in problems if f"{p.file}/".startswith(f"instances/{name}/")]
        shared = [p for p in problems if p.file in ("swapyard.yaml", "instances")]
        if own or shared:
            raise ConfigError(own + shared)
        return next((i for i in repo.instances if (i.project, i.name) == (project, name)), None)

    def _options(self) -> Any:
        if self.render_options is not None:
            return self.render_options
        return RenderOptions()

    def run_plan(self, tree: Path, names: Iterable[str]) -> Outcome:
        """Validate (and render) every instance named, in whichever project selects it."""
        names = sorted(set(names))
        outcome = Outcome("*", None, "success", "planned", "")
        try:
            repo = self._step(outcome, "validate", lambda: load_repo(tree, limits=self.limits))
        except ConfigError as exc:
            outcome.state, outcome.action = "failure", "invalid"
            outcome.summary = f"{len(exc.problems)} problem(s): {exc.problems[0]}"
            outcome.steps[-1].log = str(exc)
            return outcome
        chosen = [i for i in repo.instances if not names or i.name in names]
        lines = []
        for instance in chosen:
            try:
                digest = render_instance(instance, self._options()).digest[:19]
            except SwapyardError as exc:
                outcome.state = "failure"
                lines.append(f"{instance.key}: {exc}")
                continue
            lines.append(f"{instance.key}: {digest}")
        outcome.steps.append(
            StepRecord("render", "done", time.time(), time.time(), "\n".join(lines))
        )
        keys = ", ".join(i.key for i in chosen) or "no instance"
        outcome.summary = f"plan only: {len(chosen)} instance(s) valid ({keys})"
        if outcome.state == "failure":
            outcome.summary = "plan only: " + "; ".join(lines)
        return outcome
