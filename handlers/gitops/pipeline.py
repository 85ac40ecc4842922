"""The one seam between the worker and validate/render/plan/deploy.

`targets()` decides which instances a commit concerns; `run_instance()` takes
one instance of a checked-out tree through validation (with the whole
repository, so cross-instance checks apply), a redacted render (its digest
and artifact digests go to the history) and the executor, and returns a
`DeploymentResult` that never raises: one instance's failure never stops the others.
`run_plan_only()` is the plan-only path for unmapped branches and pull requests
(status context `swapyard/plan`).

A result keeps the words of the stored deployment row all along its way
(`status`, `action`, `summary`), and `DeploymentStatus`/`StepStatus` are the
one definition of the strings a deployment and a step of its history are
stored with: the service's queue and pages use them, the pipeline sets the
final ones.

The executor (`service.worker.deployer.Deployer`) is handed in, so this module does
not depend on a provider; without one, deployments end as plan only.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
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


class DeploymentStatus(StrEnum):
    """Where a deployment is: queued, running, or how it ended (the stored strings)."""

    WAITING = "waiting"  # queued, behind the instance's lease
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"  # the commit's fault: invalid config, a failed deploy rolled back
    ERROR = "error"  # swapyard's or the machine's fault: a crash, a fetch, a busy lock
    SUPERSEDED = "superseded"  # a newer commit of the instance was queued before it ran

    @classmethod
    def open(cls) -> tuple[DeploymentStatus, ...]:
        """The states of a deployment that has not ended: a worker will still run it."""
        return (cls.WAITING, cls.RUNNING)

    @classmethod
    def ended(cls) -> tuple[DeploymentStatus, ...]:
        """The states nothing more happens after."""
        return tuple(s for s in cls if s not in cls.open())


class StepStatus(StrEnum):
    """How a step of a deployment's history went (the stored strings)."""

    RUNNING = "running"
    STARTED = "started"  # a swap step the journal saw begin and never end (copied at recovery)
    DONE = "done"
    FAILED = "failed"
    ERROR = "error"  # the `crash` step: swapyard's own bug, with its traceback


@dataclass
class HistoryStep:
    """One step of a deployment's history, as the `steps` table stores it."""

    name: str
    status: StepStatus
    started_at: float
    finished_at: float
    log: str = ""


@dataclass
class DeploymentResult:
    """What one deployment ended with; its fields are those of the stored row."""

    instance: str
    project: str | None
    status: DeploymentStatus  # success | failure | error
    action: str  # validated | planned | removed | invalid | skipped | create | replace | ...
    summary: str
    digest: str | None = None
    steps: list[HistoryStep] = field(default_factory=list)

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

    status: DeploymentStatus  # success | failure | error
    action: str  # create | replace | noop | destroy | busy
    summary: str
    steps: tuple[HistoryStep, ...] = ()  # its own steps for the history (e.g. `wait_lock`)


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

    def run_instance(
        self, tree: Path, project: str, name: str, commit: str = ""
    ) -> DeploymentResult:
        """Validate, render and (with an executor) deploy one instance; never raises."""
        result = DeploymentResult(name, project, DeploymentStatus.SUCCESS, "validated", "")
        directory = tree / "instances" / name
        if not directory.is_symlink() and not present(directory / "apps.config"):
            result.action = "removed"
            result.summary = (
                f"instances/{name} removed: nothing destroyed (set state: absent to destroy)"
            )
            return result
        try:
            self._run(tree, project, name, result, commit)
        except ConfigError as exc:
            more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            result.status, result.action = DeploymentStatus.FAILURE, "invalid"
            result.summary = clip(str(exc.problems[0]), DESCRIPTION_LIMIT - len(more)) + more
        except SwapyardError as exc:
            result.status, result.summary = DeploymentStatus.FAILURE, str(exc)
        except Exception as exc:  # one instance's bug must not stop the batch
            result.status = DeploymentStatus.ERROR
            result.summary = f"internal error: {type(exc).__name__}: {exc}"
            result.steps.append(
                HistoryStep(
                    "crash", StepStatus.ERROR, time.time(), time.time(), traceback.format_exc()
                )
            )
        return result

    def _step(self, result: DeploymentResult, name: str, fn: Callable[[], Any]) -> Any:
        step = HistoryStep(name, StepStatus.RUNNING, time.time(), 0.0)
        result.steps.append(step)
        try:
            value = fn()
        except BaseException as exc:
            step.status, step.finished_at, step.log = StepStatus.FAILED, time.time(), str(exc)
            raise
        step.status, step.finished_at = StepStatus.DONE, time.time()
        return value

    def _run(
        self, tree: Path, project: str, name: str, result: DeploymentResult, commit: str
    ) -> None:
        instance = self._step(
            result, "validate", lambda: self._validate(tree, project, name, commit)
        )
        if instance is None:
            result.action = "skipped"
            result.summary = f"instances/{name} is not part of project {project}"
            return
        result.steps[-1].log = f"validated {instance.source}"
        if instance.state == "present":
            artifacts = self._step(
                result, "render", lambda: render_instance(instance, self._options())
            )
            result.digest = artifacts.digest
            result.steps[-1].log = "\n".join(f"{p} {d}" for p, d in artifacts.digests.items())
        result.action = "planned"
        if self.executor is None:
            digest = f"rendered {result.digest[:19]}" if result.digest else "state: absent"
            result.summary = f"validated, {digest}; plan only (no deploy)"
            return
        executor = self.executor
        done = self._step(result, "deploy", lambda: executor(instance, commit))
        result.steps[-1].log = done.summary
        result.steps[-1:-1] = done.steps  # what happened inside, listed before the deploy step
        result.status, result.action, result.summary = done.status, done.action, done.summary
        if done.status != DeploymentStatus.SUCCESS:
            result.steps[-1].status = StepStatus.FAILED

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

    def run_plan_only(self, tree: Path, names: Iterable[str]) -> DeploymentResult:
        """Validate (and render) every instance named, in whichever project selects it."""
        names = sorted(set(names))
        result = DeploymentResult("*", None, DeploymentStatus.SUCCESS, "planned", "")
        try:
            repo = self._step(result, "validate", lambda: load_repo(tree, limits=self.limits))
        except ConfigError as exc:
            result.status, result.action = DeploymentStatus.FAILURE, "invalid"
            result.summary = f"{len(exc.problems)} problem(s): {exc.problems[0]}"
            result.steps[-1].log = str(exc)
            return result
        chosen = [i for i in repo.instances if not names or i.name in names]
        lines = []
        for instance in chosen:
            try:
                digest = render_instance(instance, self._options()).digest[:19]
            except SwapyardError as exc:
                result.status = DeploymentStatus.FAILURE
                lines.append(f"{instance.key}: {exc}")
                continue
            lines.append(f"{instance.key}: {digest}")
        result.steps.append(
            HistoryStep("render", StepStatus.DONE, time.time(), time.time(), "\n".join(lines))
        )
        keys = ", ".join(i.key for i in chosen) or "no instance"
        result.summary = f"plan only: {len(chosen)} instance(s) valid ({keys})"
        if result.status == DeploymentStatus.FAILURE:
            result.summary = "plan only: " + "; ".join(lines)
        return result
