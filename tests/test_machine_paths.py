"""No tracked file names a path that exists only on one machine.

A clone must work wherever it lands, so nothing committed may point at where
one developer's checkout, home or virtualenv happens to be: tools are found
beside `sys.executable` (the venv) and then on PATH, data relative to the
repository. What counts as a machine path:

- this checkout's absolute path and the folder holding it, and likewise for
  the main repository when this is a git worktree (sibling checkouts and
  their shared/ folder live there);
- a home directory: `/home/<user>/`, `/Users/<user>/`, and anything below
  `/root/` (a bare `/root`, root's home inside an image, is fine);
- a virtualenv or interpreter at a fixed place: an absolute path through
  `venv`, `.venv`, `virtualenvs`, `.pyenv` or `site-packages`;
- pytest's temporary folders (`/tmp/pytest-of-<user>/`), i.e. pasted output.

Paths that are absolute by design on an instance or in an image (`/etc/...`,
`/mnt/data`, `/opt/swapyard`, `/usr/bin/caddy`) are not machine paths and
are not matched. A path counts only where it starts a token (after a space,
quote, `=`, `:`, `(`, `[`, `,` or at the start of a line), so URLs and
relative paths such as `.venv/bin/ruff` or `rootfs/opt/swapyard` pass.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = r"(?:^|(?<=[\s\"'`=:(\[,]))"
END = r"(?=[/\s\"'`:)\],;]|$)"
GENERIC = (
    r"/home/[^/\s\"'`]+/",
    r"/Users/[^/\s\"'`]+/",
    r"/root/",
    r"/(?:[^\s\"'`/]+/)*?(?:\.?venv|virtualenvs|\.pyenv|site-packages)/",
    r"/tmp/pytest-of-",
)


def checkout_paths() -> list[Path]:
    """This checkout, the main repository if this is a worktree, and their parents."""
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    places = {REPO, Path(common).parent}
    places |= {p.parent for p in places}
    return sorted(p for p in places if p != Path(p.anchor))


def machine_path_pattern(checkouts: list[Path]) -> re.Pattern[str]:
    own = [re.escape(str(p)) + END for p in sorted(checkouts, key=lambda p: -len(str(p)))]
    return re.compile(START + "(?:" + "|".join([*own, *GENERIC]) + ")", re.MULTILINE)


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_a_machine_path() -> None:
    pattern = machine_path_pattern(checkout_paths())
    found = []
    for path in tracked_files():
        if not path.is_file() or path == Path(__file__).resolve():  # deleted; names the rule
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            for match in pattern.finditer(line):
                token = re.match(r"[^\s\"'`]*", line[match.start() :])
                named = token.group(0) if token else match.group(0)
                found.append(f"{path.relative_to(REPO)}:{number}: {named}")
    assert not found, (
        "paths of one machine in tracked files; find tools beside sys.executable, then "
        "on PATH, and name files relative to the repository:\n" + "\n".join(found)
    )


def test_the_pattern_tells_machine_paths_from_paths_by_design() -> None:
    checkout = Path("/", "srv", "dev", "swapyard")
    pattern = machine_path_pattern([checkout, checkout.parent])
    home = "/" + "home"
    flagged = [
        f"    {checkout}/bin/python bench/render.py",
        f'SHARED = "{checkout.parent}/shared"',
        f"PYTHONPATH={checkout}",
        f"see {home}/alice/notes.md",
        "cd /" + "root/swapyard && make",
        "/" + "opt/tools/venv/bin/python -m pytest",
        "python=/" + "usr/local/lib/python3.11/site-packages/x.py",
        "E   at /" + "tmp/pytest-of-root/pytest-3/test_x0/a",
    ]
    passed = [
        ".venv/bin/ruff check .",
        "`<state>/instances/<id>/rootfs/` (`SWAPYARD_ROOT=rootfs/opt/swapyard`",
        "root:x:0:0:root:/root:/bin/sh",
        '"ENV HOME=/root",',
        "${SWAPYARD_DATA:-/mnt/data}/.caddy:/data",
        "/etc/swapyard/maintenance/on",
        "https://example.org/home/alice/",
        f"{checkout.parent}ices/x is not below the parent",
    ]
    assert [line for line in flagged if not pattern.search(line)] == []
    assert [line for line in passed if pattern.search(line)] == []
