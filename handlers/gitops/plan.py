"""Plan: compare freshly rendered instances with what is deployed.

Per instance the plan says one of:

- `create`    not deployed yet;
- `replace`   the rendered artifacts differ: a new instance takes over;
- `dns-only`  artifacts are equal but DNS settings or records changed;
- `noop`      nothing to do (settings kept outside the instance, such as the
              backup schedule, may still have changed; the reason says so);
- `destroy`   the config says `state: absent` and the instance is deployed.

An instance whose directory was removed from the repository is kept: removing
a file must never destroy a server; `state: absent` must say so. Plans are
computed on redacted renders, so diffs are safe to show and store.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from renderers.artifacts import MANIFEST, ArtifactSet
from schemas.errors import SwapyardError

Action = Literal["create", "replace", "dns-only", "noop", "destroy"]
ORDER: tuple[Action, ...] = ("create", "replace", "dns-only", "destroy", "noop")
BINARY_ARTIFACTS = ("ignition.json",)


class PlanError(SwapyardError):
    """The deployed state cannot be read (e.g. a damaged manifest)."""


@dataclass(frozen=True)
class Deployed:
    """What is deployed for one instance: its manifest and the redacted artifacts."""

    manifest: Mapping[str, Any]
    files: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return str(self.manifest.get("digest", ""))


@dataclass(frozen=True)
class PlanItem:
    instance: str  # "project/name"
    action: Action
    reason: str
    diff: str = ""


def _text_diff(name: str, old: bytes | None, new: bytes | None) -> str:
    if name in BINARY_ARTIFACTS:
        return f"~ {name} changed (it carries the files shown here)\n"
    try:
        a = (old or b"").decode().splitlines(keepends=True)
        b = (new or b"").decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"~ {name} changed (binary)\n"
    lines = difflib.unified_diff(
        a,
        b,
        fromfile=f"deployed/{name}" if old is not None else "/dev/null",
        tofile=f"rendered/{name}" if new is not None else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def artifact_diff(deployed: Deployed, rendered: ArtifactSet) -> str:
    """A unified diff of every artifact whose digest changed, names sorted."""
    old_digests: Mapping[str, str] = deployed.manifest.get("artifacts", {})
    new_digests = rendered.digests
    out = []
    for name in sorted(set(old_digests) | set(new_digests)):
        if old_digests.get(name) == new_digests.get(name):
            continue
        new = rendered[name] if name in new_digests else None
        old = deployed.files.get(name)
        if old is None and name in old_digests:
            out.append(f"~ {name} changed (deployed content not available)\n")
        else:
            out.append(_text_diff(name, old, new))
    return "".join(out)


def _section_diff(name: str, old: Any, new: Any) -> str:
    a = json.dumps(old, indent=2, sort_keys=True).splitlines(keepends=True)
    b = json.dumps(new, indent=2, sort_keys=True).splitlines(keepends=True)
    return "".join(
        line if line.endswith("\n") else line + "\n"
        for line in difflib.unified_diff(a, b, f"deployed/{name}", f"rendered/{name}")
    )


def _dns_timing(dns: Mapping[str, Any] | None) -> str:
    """When a swap destroys the old instance, for an instance whose records follow it."""
    if not dns or dns.get("provider", "none") == "none":
        return ""
    return (
        f"; its {dns['provider']} records move to the new instance after its health check; "
        f"where their address changes, the old one is destroyed {dns['ttl']} s later (dns.ttl)"
    )


def plan_instance(
    key: str, rendered: ArtifactSet | None, absent: bool, deployed: Deployed | None
) -> PlanItem:
    """The action for one instance. `rendered` is None when the config is gone or absent."""
    if deployed is None:
        if absent or rendered is None:
            return PlanItem(key, "noop", "state: absent and not deployed")
        return PlanItem(key, "create", "not deployed yet", artifact_diff(Deployed({}), rendered))
    if absent:
        return PlanItem(key, "destroy", "state: absent in the config (the volume is kept)")
    if rendered is None:
        return PlanItem(
            key,
            "noop",
            "removed from the repository; kept running (set `state: absent` to destroy it)",
        )
    if rendered.digest != deployed.digest:
        changed = sorted(
            n
            for n in set(rendered.digests) | set(deployed.manifest.get("artifacts", {}))
            if rendered.digests.get(n) != deployed.manifest.get("artifacts", {}).get(n)
        )
        return PlanItem(
            key,
            "replace",
            "changed: " + ", ".join(changed) + _dns_timing(rendered.manifest().get("dns")),
            artifact_diff(deployed, rendered),
        )
    new_outside = rendered.manifest()
    if new_outside.get("dns") != deployed.manifest.get("dns"):
        return PlanItem(
            key,
            "dns-only",
            "DNS settings changed",
            _section_diff("dns", deployed.manifest.get("dns"), new_outside.get("dns")),
        )
    changed = [
        k for k in sorted(rendered.outside) if new_outside.get(k) != deployed.manifest.get(k)
    ]
    if changed:
        return PlanItem(
            key,
            "noop",
            f"instance unchanged; {', '.join(changed)} settings changed",
            "".join(
                _section_diff(k, deployed.manifest.get(k), new_outside.get(k)) for k in changed
            ),
        )
    return PlanItem(key, "noop", "unchanged")


def make_plan(
    rendered: Mapping[str, ArtifactSet], absent: Iterable[str], deployed: Mapping[str, Deployed]
) -> list[PlanItem]:
    """Plan every instance present on either side, sorted by instance key."""
    absent_keys = set(absent)
    keys = sorted(set(rendered) | absent_keys | set(deployed))
    return [plan_instance(k, rendered.get(k), k in absent_keys, deployed.get(k)) for k in keys]


def read_deployed(directory: Path) -> dict[str, Deployed]:
    """Read a `swapyard render --out` tree: `<project>/<instance>/manifest.json` and files."""
    out: dict[str, Deployed] = {}
    if not directory.is_dir():
        raise PlanError(f"{directory}: no such directory; expected the output of swapyard render")
    for manifest_path in sorted(directory.glob(f"*/*/{MANIFEST}")):
        base = manifest_path.parent
        try:
            manifest = json.loads(manifest_path.read_text())
        except (ValueError, OSError) as exc:
            raise PlanError(
                f"{manifest_path}: unreadable manifest ({exc}); render it again"
            ) from None
        if not isinstance(manifest, dict):
            raise PlanError(f"{manifest_path}: expected a JSON object")
        files = {
            p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        out[f"{base.parent.name}/{base.name}"] = Deployed(manifest, files)
    return out


def summary(items: Iterable[PlanItem]) -> str:
    """`1 to create, 2 to replace, 3 unchanged` — for statuses and the CLI."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.action] = counts.get(item.action, 0) + 1
    words = {
        "create": "to create",
        "replace": "to replace",
        "dns-only": "DNS-only",
        "destroy": "to destroy",
        "noop": "unchanged",
    }
    return ", ".join(f"{counts[a]} {words[a]}" for a in ORDER if a in counts) or "nothing"
