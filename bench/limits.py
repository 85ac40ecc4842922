"""Benchmark: what the limits cost a legitimate repository, and what hostile ones cost now.

Not a test: it prints figures and asserts nothing about time.

1. The guard (`schemas.yamlfile._guard`, one pass over the parser's events)
   against a parse without it, on a 100-app `apps.config`: the ratio is the
   overhead every file pays.
2. `load_repo` of hostile repositories (an alias bomb, a 30 MB file, nesting
   past the recursion limit, 1,001 instance directories, a 64 GiB sparse
   shipped file), each against `load_repo` of the example repository in the
   same run.

    .venv/bin/python bench/limits.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.render import _custom_app, median_ms
from schemas import DEFAULT_LIMITS, ConfigError, load_repo
from schemas.yamlfile import _FastLoader, _guard, _load, parse_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config-repo"
SITE = (
    "apps:\n  - name: site\n    image: nginx:1.27.3\n    port: 80\n    domains: [a.example.org]\n"
)


def refused_ms(root: Path, repeat: int) -> float:
    def run() -> None:
        try:
            load_repo(root)
        except ConfigError:
            return
        raise AssertionError(f"{root} was accepted")

    return median_ms(run, repeat)


def hostile(base: Path) -> dict[str, Path]:
    cases: dict[str, Path] = {}

    def instance(case: str, text: str, name: str = "x") -> Path:
        path = base / case / "instances" / name / "apps.config"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        cases[case] = base / case
        return path

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    instance("alias bomb (10 x 9)", SITE + "\n".join(lines) + "\n")
    instance("30 MB apps.config", SITE + "# padding\n" * (3 << 20))
    instance("[ x 900 (recursion)", SITE + "deep: " + "[" * 900 + "]" * 900 + "\n")
    for i in range(1001):
        instance("1,001 instance dirs", SITE, name=f"i{i}")
    path = instance("64 GiB shipped file", SITE)
    (path.parent / "files").mkdir()
    with open(path.parent / "files" / "disk.img", "wb") as handle:
        handle.truncate(64 << 30)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    big = yaml.safe_dump(
        {"apps": [_custom_app(f"app{i}", f"a{i}.example.org", i) for i in range(100)]}
    )
    # interleaved, so that a busy shared machine slows all three alike
    runs: dict[str, list[float]] = {"bare": [], "guard": [], "guarded": []}
    for _ in range(args.repeat):
        runs["bare"].append(median_ms(lambda: _load(_FastLoader, big), 1))
        runs["guard"].append(
            median_ms(lambda: _guard(_FastLoader, big, "apps.config", DEFAULT_LIMITS), 1)
        )
        runs["guarded"].append(median_ms(lambda: parse_yaml(big, "apps.config"), 1))
    bare, guard, guarded = (statistics.median(runs[k]) for k in ("bare", "guard", "guarded"))
    print(f"100-app apps.config ({len(big)} bytes)")
    print(f"  parse without guard  median {bare:8.1f} ms")
    print(f"  guard alone          median {guard:8.1f} ms")
    print(f"  guard / parse        ratio  {guard / bare:8.2f}x")
    print(f"  parse_yaml: guard, parse, line map  median {guarded:8.1f} ms")

    baseline = median_ms(lambda: load_repo(EXAMPLE), args.repeat)
    print(f"\nload_repo, baseline: the example repository  median {baseline:8.1f} ms")
    base = Path(tempfile.mkdtemp(prefix="swapyard-bench-limits-"))
    try:
        for case, root in hostile(base).items():
            took = refused_ms(root, args.repeat)
            print(f"  {case:<22} refused  median {took:8.1f} ms   ratio {took / baseline:.2f}x")
    finally:
        shutil.rmtree(base)
    print(f"\n({args.repeat} runs each; medians)")


if __name__ == "__main__":
    main()
