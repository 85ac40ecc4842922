"""Mirror benchmark: what checking a fetched tip whole costs, beside what it replaced.

    .venv/bin/python bench/mirror.py [--instances 300] [--commits 40] [--repeat 15]

Builds a config repository of a few hundred instances (an apps.config and two
files each) with a history of commits touching a few instances each, and a
mirror of it through `handlers.gitops.mirror`. Prints medians of:

- `cat-file -e` on the tip: the old check, whether the commit object exists;
- `is_complete` on the tip (under a ref: the tip's tree, then nothing outside
  the refs), and on a tip outside every ref (its whole history is walked: the
  worst case, e.g. a commit fetched by id after a force-push);
- `export` of the tip, the read every deployment does anyway;
- a one-commit fetch into the mirror as it is now (received pack kept) beside
  git's default (a small fetch unpacked into loose objects), each including the
  check that follows it.

Not a test: it prints figures and ratios, and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import git as gitpython

from bench.render import median_ms
from handlers.gitops.mirror import MirrorCache

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, check=True)
    return out.stdout.decode().strip()


def apps_config(name: str, version: int) -> str:
    return (
        "instance:\n  provider: local\napps:\n"
        f"  - name: {name}\n    image: example/{name}:{version}\n    port: 8080\n"
        f"    domains: [{name}.example.org]\n"
    )


def build_origin(root: Path, instances: int, commits: int) -> tuple[Path, Path]:
    bare, work = root / "origin.git", root / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
    git("init", "-q", "-b", "main", str(work), cwd=root)
    for n in range(instances):
        directory = work / "instances" / f"i{n:03}"
        (directory / "files").mkdir(parents=True)
        (directory / "apps.config").write_text(apps_config(f"i{n:03}", 0))
        (directory / "files" / "index.html").write_text(f"<h1>i{n:03}</h1>\n")
        (directory / "files" / "notes.txt").write_text(f"instance {n}\n" * 20)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "all instances", cwd=work)
    rng = random.Random(1)
    for c in range(1, commits):
        for n in rng.sample(range(instances), 3):
            name = f"i{n:03}"
            (work / "instances" / name / "apps.config").write_text(apps_config(name, c))
        git("commit", "-qam", f"change {c}", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return bare, work


def one_commit(work: Path, bare: Path, step: int) -> str:
    name = f"i{step % 100:03}"
    (work / "instances" / name / "apps.config").write_text(apps_config(name, 1000 + step))
    git("commit", "-qam", f"push {step}", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare, work = build_origin(root, args.instances, args.commits)
        tip = git("rev-parse", "HEAD", cwd=work)
        objects = len(git("rev-list", "--objects", "--all", cwd=bare).splitlines())
        mirror = MirrorCache(root / "mirrors").mirror("bench/config")
        mirror.fetch(str(bare), tip)

        old = gitpython.Git(str(mirror.path))  # the old check, through the same library
        exists = median_ms(lambda: old.cat_file("-e", f"{tip}^{{commit}}"), args.repeat)
        under_ref = median_ms(lambda: mirror.is_complete(tip), args.repeat)
        export = median_ms(
            lambda: mirror.export(tip, Path(tempfile.mkdtemp(dir=root)) / "t"), args.repeat
        )
        outside = shutil.copytree(mirror.path, root / "outside.git")
        git("update-ref", "-d", "refs/heads/main", cwd=outside)
        walk = median_ms(
            lambda: git("rev-list", "--objects", "--quiet", tip, "--not", "--all", cwd=outside),
            args.repeat,
        )

        # one-commit fetches: the mirror as it is now, beside git's default into a copy
        plain = gitpython.Git(str(shutil.copytree(mirror.path, root / "loose.git")))
        kept_ms, loose_ms = [], []
        for step in range(args.repeat):
            sha = one_commit(work, bare, step)
            start = time.perf_counter()
            mirror.fetch(str(bare), sha)
            kept_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()  # the old fetch: check, check under the lock, fetch, check
            for _ in range(2):
                with suppress(gitpython.GitCommandError):
                    plain.cat_file("-e", f"{sha}^{{commit}}")
            plain.fetch("--no-tags", str(bare), "+refs/heads/*:refs/heads/*")
            plain.cat_file("-e", f"{sha}^{{commit}}")
            loose_ms.append((time.perf_counter() - start) * 1000)
        packs = len(list((mirror.path / "objects" / "pack").glob("*.pack")))
        after_many = median_ms(lambda: mirror.is_complete(sha), args.repeat)

    kept, plain = statistics.median(kept_ms), statistics.median(loose_ms)
    print(
        f"repository: {args.instances} instances, {args.commits} commits, {objects} objects; "
        f"medians of {args.repeat}"
    )
    print(f"  cat-file -e (the old check)           {exists:8.1f} ms   baseline")
    print(
        f"  is_complete, tip under a ref          {under_ref:8.1f} ms   "
        f"x{under_ref / exists:.1f} the baseline, {under_ref / export:.2f} of an export"
    )
    print(f"  history walk, tip outside every ref   {walk:8.1f} ms   x{walk / exists:.1f}")
    print(f"  export of the tip                     {export:8.1f} ms")
    print(
        f"  one-commit fetch, pack kept + check   {kept:8.1f} ms   "
        f"x{kept / plain:.2f} git's default (unpacked loose, {plain:.1f} ms)"
    )
    print(f"  is_complete after {args.repeat} fetches ({packs} packs) {after_many:8.1f} ms")


if __name__ == "__main__":
    main()
