"""What a push changed: the set of affected instance names, from the git diff.

- a new branch (all-zero `before`) and a force-push (`before` unknown or not an
  ancestor of `after`) affect every instance: there is no trustworthy base;
- a change to `swapyard.yaml` affects every instance (defaults and projects);
- otherwise `instances/<name>/...` paths name the instances, over all the
  commits of the push at once (`before..after`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from handlers.gitops.mirror import Mirror
from handlers.refs import ZERO_SHA

REPO_FILE = "swapyard.yaml"


@dataclass(frozen=True)
class Change:
    everything: bool
    names: frozenset[str]
    note: str


def from_paths(paths: Iterable[str]) -> Change:
    names: set[str] = set()
    for path in paths:
        if path == REPO_FILE:
            return Change(True, frozenset(), f"{REPO_FILE} changed: every instance is affected")
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == "instances":
            names.add(parts[1])
    note = f"{len(names)} instance(s) changed" if names else "no instance changed"
    return Change(False, frozenset(names), note)


def diff_push(mirror: Mirror, before: str | None, after: str) -> Change:
    if not before or before == ZERO_SHA:
        return Change(True, frozenset(), "new branch: every instance is evaluated")
    if not mirror.is_complete(before) or not mirror.is_ancestor(before, after):
        return Change(
            True,
            frozenset(),
            f"force-push: {before[:8]} is not an ancestor of {after[:8]}; "
            "every instance is evaluated",
        )
    return from_paths(mirror.changed_paths(before, after))
