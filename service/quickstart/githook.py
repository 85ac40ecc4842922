"""A git `post-receive` hook that delivers pushes to swapyard as a forge would.

Installed in a bare repository (`install`), it reads git's `old new ref`
lines, builds a GitHub-shaped push payload per ref (ref, before, after,
created/deleted/forced, repository.full_name/clone_url, commits with their
added/removed/modified files, head_commit, pusher), signs the exact body with
HMAC-SHA256 and POSTs it to `<url>/hooks/github` with `X-GitHub-Event: push`,
a fresh `X-GitHub-Delivery` and `X-Hub-Signature-256`. The quick start and
the end-to-end tests both use it, so what they test is what users run.

The hook's settings live beside it in `hooks/swapyard-hook.json`: `url`,
`secret_file`, `full_name`, `clone_url`. A failed delivery is reported to the
pusher and never fails the push (the service's missed-push check can catch up).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from schemas.errors import SwapyardError

ZERO = "0" * 40
CONFIG_NAME = "swapyard-hook.json"


class HookError(SwapyardError):
    """The hook cannot be installed or cannot deliver."""


def _git_run(git_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The one subprocess seam of this module: a git command in the bare repository."""
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True, timeout=60
    )


def _git(git_dir: Path, *args: str) -> str:
    proc = _git_run(git_dir, *args)
    if proc.returncode != 0:
        raise HookError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _commit(git_dir: Path, sha: str, full_name: str) -> dict[str, Any]:
    fmt = "%H%x00%an%x00%ae%x00%cn%x00%ce%x00%cI%x00%B"
    fields = _git(git_dir, "show", "-s", f"--format={fmt}", sha).split("\0", 6)
    h, an, ae, cn, ce, when, message = fields
    changes: dict[str, list[str]] = {"added": [], "removed": [], "modified": []}
    status = _git(git_dir, "diff-tree", "--root", "-r", "--no-commit-id", "--name-status", sha)
    for line in status.splitlines():
        kind, _, path = line.partition("\t")
        key = {"A": "added", "D": "removed"}.get(kind[:1], "modified")
        changes[key].append(path.split("\t")[-1])
    return {
        "id": h,
        "tree_id": _git(git_dir, "rev-parse", f"{sha}^{{tree}}").strip(),
        "distinct": True,
        "message": message.strip(),
        "timestamp": when,
        "url": f"file://{git_dir}#{h}",
        "author": {"name": an, "email": ae, "username": an},
        "committer": {"name": cn, "email": ce, "username": cn},
        **changes,
    }


def push_payload(
    git_dir: Path, before: str, after: str, ref: str, full_name: str, clone_url: str
) -> dict[str, Any]:
    """GitHub's push payload for one updated ref of the bare repository at `git_dir`."""
    created, deleted = before == ZERO, after == ZERO
    forced = False
    shas: list[str] = []
    if not deleted:
        if created:
            # new to the repository: not on any other branch (git wants the short name here)
            spec = [after, "--not", f"--exclude={ref.removeprefix('refs/heads/')}", "--branches"]
        else:
            spec = [f"{before}..{after}"]
            merge_base = _git_run(git_dir, "merge-base", "--is-ancestor", before, after)
            forced = merge_base.returncode != 0
        shas = _git(git_dir, "rev-list", "--reverse", "--max-count=20", *spec).split()
    commits = [_commit(git_dir, sha, full_name) for sha in shas]
    owner, _, name = full_name.partition("/")
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": created,
        "deleted": deleted,
        "forced": forced,
        "base_ref": None,
        "compare": f"file://{git_dir}#{before[:12]}...{after[:12]}",
        "commits": commits,
        "head_commit": commits[-1] if commits else None,
        "repository": {
            "name": name,
            "full_name": full_name,
            "owner": {"name": owner, "login": owner},
            "clone_url": clone_url,
            "html_url": clone_url,
            "default_branch": "main",
            "private": True,
        },
        "pusher": {"name": os.environ.get("USER", "git"), "email": None},
        "sender": {"login": os.environ.get("USER", "git")},
    }


def sign(secret: str, body: bytes) -> str:
    """GitHub's `X-Hub-Signature-256` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(url: str, secret: str, payload: dict[str, Any], timeout: float = 10) -> int:
    """POST one signed push event to `<url>/hooks/github`; returns the HTTP status."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/hooks/github",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/swapyard-githook",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError as exc:
        raise HookError(f"cannot reach {url}: {exc}") from exc


def post_receive(git_dir: Path, lines: list[str]) -> int:
    """Deliver each `old new ref` line; returns how many deliveries failed."""
    config = json.loads((git_dir / "hooks" / CONFIG_NAME).read_text())
    secret = Path(config["secret_file"]).read_text().strip()
    failed = 0
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        before, after, ref = parts
        try:
            payload = push_payload(
                git_dir, before, after, ref, config["full_name"], config["clone_url"]
            )
            status = deliver(config["url"], secret, payload)
        except (HookError, OSError, ValueError) as exc:
            print(f"swapyard: not delivered ({ref}): {exc}", file=sys.stderr)
            failed += 1
            continue
        ok = status == 202
        failed += not ok
        print(f"swapyard: push {ref} {after[:12]} delivered -> HTTP {status}", file=sys.stderr)
    return failed


def install(bare: Path, url: str, secret_file: Path, full_name: str, python: str = "") -> Path:
    """Install the post-receive hook (and its settings) in the bare repository `bare`."""
    bare = bare.resolve()
    hooks = bare / "hooks"
    if not (bare / "HEAD").exists():
        raise HookError(f"{bare} is not a bare git repository")
    hooks.mkdir(exist_ok=True)
    settings = {
        "url": url,
        "secret_file": str(secret_file.resolve()),
        "full_name": full_name,
        "clone_url": str(bare),
    }
    (hooks / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
    root = Path(__file__).resolve().parents[2]
    hook = hooks / "post-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "# Installed by swapyard (service/quickstart/githook.py): deliver the push as a signed\n"
        "# webhook.\n"
        f'PYTHONPATH="{root}" exec "{python or sys.executable}" -m service.quickstart.githook\n'
    )
    hook.chmod(0o755)
    return hook


def main() -> int:
    """Entry point of the installed hook: git runs it in the bare repository."""
    git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    try:
        post_receive(git_dir, sys.stdin.read().splitlines())
    except (OSError, ValueError, KeyError) as exc:
        print(f"swapyard: hook misconfigured: {exc}", file=sys.stderr)
    return 0  # a post-receive hook cannot undo the push; never make it look failed


if __name__ == "__main__":
    sys.exit(main())
