"""Configs built to hurt: each is refused, in bounded time, naming the limit and how to raise it.

Every class is checked through the library and through the real command line
(exit code, message, no traceback); `FINISHES` is a generous "not hanging"
bound, not a speed measurement (bench/limits.py measures).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import DEFAULT_LIMITS, ConfigError, Limits, load_repo
from tests.conftest import run_cli

FINISHES = 10.0  # seconds

SITE = """\
apps:
  - name: site
    image: nginx:1.27.3
    port: 80
    domains: [site.example.org]
"""


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """The "billion laughs" shape: each level lists the previous one `width` times."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return SITE + "\n".join(lines) + f"\nbomb: *a{levels - 1}\n"


def instance(root: Path, text: str | bytes, name: str = "x") -> Path:
    path = root / "instances" / name / "apps.config"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refused(root: Path, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """The problems `load_repo` reports, checked to come within FINISHES."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_repo(root, limits=limits)
    assert time.monotonic() - started < FINISHES
    return [str(p) for p in caught.value.problems]


def cli_refuses(root: Path, *options: str) -> str:
    """Run `swapyard validate` as a user would: exit 1, no traceback, within FINISHES
    (plus the interpreter's start); returns what it printed on stderr."""
    started = time.monotonic()
    result = run_cli("validate", str(root), *options)
    assert time.monotonic() - started < FINISHES + 20
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("problem(s) found")
    return result.stderr


# -- aliases: nodes counted as expanded -----------------------------------------------------


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    instance(tmp_path, alias_bomb())
    [problem] = refused(tmp_path)
    assert problem.startswith("instances/x/apps.config:")
    assert "expands to more than 20000 YAML nodes" in problem
    assert "limit max_yaml_nodes: raise it with --max-yaml-nodes" in problem
    stderr = cli_refuses(tmp_path)
    assert "--max-yaml-nodes" in stderr


def test_the_same_bomb_in_swapyard_yaml_and_through_render_and_plan(tmp_path: Path) -> None:
    instance(tmp_path, SITE)
    (tmp_path / "swapyard.yaml").write_text(alias_bomb().replace(SITE, ""))
    assert "swapyard.yaml:" in refused(tmp_path)[0]
    for command in (["render", "--out", str(tmp_path / "out")], ["plan", "--against", "."]):
        started = time.monotonic()
        result = run_cli(*command[:1], str(tmp_path), *command[1:])
        assert time.monotonic() - started < FINISHES + 20
        assert result.returncode == 1 and "max_yaml_nodes" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_raising_the_node_limit_lets_a_larger_document_through(tmp_path: Path) -> None:
    instance(tmp_path, alias_bomb(levels=3, width=9))  # 9 + 81 + 729 strings
    assert "max_yaml_nodes" in refused(tmp_path, Limits(max_yaml_nodes=500))[0]
    stderr = cli_refuses(tmp_path, "--max-yaml-nodes", "500")
    assert "expected at most 500 nodes" in stderr
    # within the default limit the document is read, and the schema speaks instead
    assert refused(tmp_path)[0].startswith("instances/x/apps.config:6: a0: unknown field")


def test_small_anchors_and_merge_keys_keep_working(tmp_path: Path) -> None:
    instance(
        tmp_path,
        """\
apps:
  - &app
    name: one
    image: nginx:1.27.3
    port: 80
    domains: [one.example.org]
  - <<: *app
    name: two
    port: 8080
    domains: [two.example.org]
""",
    )
    repo = load_repo(tmp_path)
    [one, two] = repo.instances[0].apps
    assert (one.name, one.port, two.name, two.port) == ("one", 80, "two", 8080)
    assert two.services[0].image == "nginx:1.27.3"


def test_an_alias_to_its_own_collection_is_refused(tmp_path: Path) -> None:
    instance(tmp_path, SITE + "loop: &loop [1, *loop]\n")
    [problem] = refused(tmp_path)
    assert problem == (
        "instances/x/apps.config:6: the alias *loop refers to a collection that contains it; "
        "expected a structure without cycles"
    )
    cli_refuses(tmp_path)


# -- nesting depth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 900 + "]" * 900,  # within libyaml's own 1000, past Python's recursion limit
        "[" * 20000 + "]" * 20000,  # past libyaml's limit: the pure-Python parser reports
        "{a: " * 900 + "1" + "}" * 900,
        "".join(f"\n{'  ' * i}k:" for i in range(200)) + " 1",  # block mappings
    ],
    ids=["flow-lists-900", "flow-lists-20000", "flow-mappings-900", "block-200"],
)
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, nested: str) -> None:
    instance(tmp_path, SITE + "deep: " + nested + "\n")
    [problem] = refused(tmp_path)
    assert problem.startswith("instances/x/apps.config:")
    assert ": nested too deeply; expected at most 32 levels" in problem
    assert "limit max_yaml_depth: raise it with --max-yaml-depth" in problem
    cli_refuses(tmp_path)


def test_depth_through_an_alias_counts_what_it_expands_to(tmp_path: Path) -> None:
    deep = "[" * 20 + "1" + "]" * 20
    instance(tmp_path, SITE + f"a: &a {deep}\nb: {'[' * 20}*a{']' * 20}\n")
    [problem] = refused(tmp_path)
    assert problem.startswith("instances/x/apps.config:7: the alias *a nests too deeply")


def test_the_depth_limit_can_be_raised_only_as_far_as_is_safe(tmp_path: Path) -> None:
    instance(tmp_path, SITE + "deep: " + "[" * 95 + "]" * 95 + "\n")
    assert "unknown field" in refused(tmp_path, Limits(max_yaml_depth=100))[0]
    assert "deep: unknown field" in cli_refuses(tmp_path, "--max-yaml-depth", "100")
    result = run_cli("validate", str(tmp_path), "--max-yaml-depth", "5000")
    assert result.returncode == 2 and "1<=x<=100" in result.stderr
    with pytest.raises(ValueError, match="max_yaml_depth: expected at most 100"):
        Limits(max_yaml_depth=5000)


# -- size, before reading --------------------------------------------------------------------


def test_a_30_mb_apps_config_is_refused_from_its_size(tmp_path: Path) -> None:
    instance(tmp_path, SITE + "# padding\n" * (3 * 1024 * 1024))
    [problem] = refused(tmp_path)
    assert problem == (
        f"instances/x/apps.config: is {len(SITE) + 30 * 1024 * 1024} bytes; expected at most "
        "1048576 bytes (limit max_file_bytes: raise it with --max-file-bytes or the service "
        "setting max_file_bytes)"
    )
    cli_refuses(tmp_path)


def test_size_is_checked_before_anything_is_read(tmp_path: Path) -> None:
    # A sparse 64 GiB file: reading it would take minutes and all the memory there is.
    path = instance(tmp_path, SITE)
    os.truncate(path, 200 << 20)
    assert refused(tmp_path)[0].startswith("instances/x/apps.config: is 209715200 bytes")
    os.truncate(path, 64 << 30)  # past the repository's total too: that is said first
    assert refused(tmp_path) == [
        "instances: hold 68719476736 bytes together (the largest: instances/x/apps.config, "
        "68719476736 bytes); expected at most 268435456 bytes (limit max_total_bytes: raise "
        "it with --max-total-bytes or the service setting max_total_bytes)"
    ]
    path.unlink()
    instance(tmp_path, SITE)
    (tmp_path / "swapyard.yaml").write_text("")
    os.truncate(tmp_path / "swapyard.yaml", 64 << 30)
    assert any(p.startswith("swapyard.yaml: is 68719476736 bytes") for p in refused(tmp_path))


def test_raising_the_size_limit(tmp_path: Path) -> None:
    instance(tmp_path, SITE + "# padding\n" * 150_000)  # 1.5 MB of comments
    assert "max_file_bytes" in cli_refuses(tmp_path)
    result = run_cli("validate", str(tmp_path), "--max-file-bytes", "2000000")
    assert result.returncode == 0, result.stderr


def test_a_very_long_scalar_is_bounded_by_the_file_size(tmp_path: Path) -> None:
    instance(tmp_path, SITE.replace("site.example.org", "a." * 400_000 + "org"))
    [problem] = refused(tmp_path)
    assert problem.startswith("instances/x/apps.config:5: apps[0].domains[0]: found a string")
    assert len(problem) < 300  # the value is clipped, not echoed whole
    assert len(cli_refuses(tmp_path)) < 1000


def test_huge_numbers_of_keys_are_refused(tmp_path: Path) -> None:
    instance(tmp_path, SITE + "".join(f"k{i}: {i}\n" for i in range(30_000)))
    [problem] = refused(tmp_path)
    assert "the document expands to more than 20000 YAML nodes" in problem
    cli_refuses(tmp_path)


@pytest.mark.parametrize(
    "content, message",
    [
        (os.urandom(4096).replace(b"\x00", b"") + b"\xff\xfe", "is not UTF-8 text"),
        (b"apps:\x00\x01\x02 binary\n", "invalid YAML"),
    ],
    ids=["not-utf8", "control-characters"],
)
def test_binary_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    instance(tmp_path, content)
    [problem] = refused(tmp_path)
    assert problem.startswith("instances/x/apps.config") and message in problem
    cli_refuses(tmp_path)


# -- instance directories --------------------------------------------------------------------


def test_thousands_of_instance_directories_are_refused_before_any_is_read(tmp_path: Path) -> None:
    for i in range(1001):
        instance(tmp_path, "apps: [", name=f"i{i}")  # each would be a YAML error if read
    assert refused(tmp_path) == [
        "instances: holds more than 1000 entries; expected at most 1000 directories "
        "(limit max_instances: raise it with --max-instances or the service setting "
        "max_instances)"
    ]
    cli_refuses(tmp_path)
    stderr = cli_refuses(tmp_path, "--max-instances", "2000")
    assert "instances/i999/apps.config:1: " in stderr and "max_instances" not in stderr
    assert stderr.endswith("1001 problem(s) found\n")


# -- links: nothing outside the repository is ever read --------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the repository, holding what must never be read."""
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "apps.config").write_text("apps: [{name: leaked-secret-value}]\n")
    (secret / "swapyard.yaml").write_text("projects: leaked-secret-value\n")
    return secret


LINKS: dict[str, Callable[[Path, Path], None]] = {
    "apps.config": lambda repo, out: (
        (repo / "instances/x").mkdir(parents=True)
        or (repo / "instances/x/apps.config").symlink_to(out / "apps.config")
    ),
    "instance-dir": lambda repo, out: (
        (repo / "instances").mkdir() or (repo / "instances/x").symlink_to(out)
    ),
    "instances": lambda repo, out: (repo / "instances").symlink_to(out),
    "swapyard.yaml": lambda repo, out: (repo / "swapyard.yaml").symlink_to(out / "swapyard.yaml"),
    "shipped-file": lambda repo, out: (
        (repo / "instances/x/files").mkdir(parents=True)
        or (repo / "instances/x/files/passwd").symlink_to("/etc/passwd")
    ),
    "shipped-dir": lambda repo, out: (
        (repo / "instances/x/files").mkdir(parents=True)
        or (repo / "instances/x/files/up").symlink_to("../../..")
    ),
}


@pytest.mark.parametrize("where", sorted(LINKS))
def test_links_are_refused_and_never_followed(tmp_path: Path, outside: Path, where: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    LINKS[where](repo, outside)
    if not (repo / "instances/x/apps.config").exists() and where != "instances":
        instance(repo, SITE)
    found = refused(repo)
    assert any("is a symbolic link; expected a" in p for p in found), found
    assert not any("leaked-secret-value" in p for p in found)
    stderr = cli_refuses(repo)
    assert "leaked-secret-value" not in stderr


def test_a_pipe_in_files_is_refused_without_blocking(tmp_path: Path) -> None:
    instance(tmp_path, SITE)
    (tmp_path / "instances/x/files").mkdir()
    os.mkfifo(tmp_path / "instances/x/files/pipe")
    assert refused(tmp_path) == [
        "instances/x/files/pipe: is not a regular file (a device, pipe or socket); "
        "expected a regular file"
    ]


# -- shipped files ---------------------------------------------------------------------------


def test_big_shipped_files_are_refused_from_their_size(tmp_path: Path) -> None:
    instance(tmp_path, SITE)
    files = tmp_path / "instances/x/files"
    files.mkdir()
    (files / "small.txt").write_text("hello\n")
    with open(files / "disk.img", "wb") as handle:
        handle.truncate(64 << 30)  # sparse: would take minutes and all memory to read
    assert refused(tmp_path)[0].startswith(
        f"instances: hold {(64 << 30) + 6 + len(SITE)} bytes together (the largest: "
        "instances/x/files/disk.img, 68719476736 bytes); expected at most 268435456 bytes"
    )
    os.truncate(files / "disk.img", 200 << 20)  # within the total, past the instance's limit
    [problem] = refused(tmp_path)
    assert problem == (
        f"instances/x/files: holds {(200 << 20) + 6} bytes; expected at most 16777216 bytes "
        "(limit max_shipped_bytes: raise it with --max-shipped-bytes or the service setting "
        "max_shipped_bytes)"
    )
    cli_refuses(tmp_path)
    os.truncate(files / "disk.img", 1000)
    assert dict(load_repo(tmp_path).instances[0].files)["disk.img"] == b"\0" * 1000
    assert "max_shipped_bytes" in cli_refuses(tmp_path, "--max-shipped-bytes", "500")


def test_too_many_shipped_files_are_refused(tmp_path: Path) -> None:
    instance(tmp_path, SITE)
    files = tmp_path / "instances/x/files/a/b"
    files.mkdir(parents=True)
    for i in range(1000):
        (files / f"f{i}").write_text("x")
    [problem] = refused(tmp_path)
    assert problem.startswith(
        "instances/x/files: holds more than 1000 entries; expected at most 1000 files"
    )
    assert "--max-shipped-files" in cli_refuses(tmp_path)
    assert len(load_repo(tmp_path, limits=Limits(max_shipped_files=1002)).instances) == 1


def test_files_of_all_instances_together_are_bounded(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        instance(tmp_path, SITE.replace("site.example.org", f"{name}.example.org"), name=name)
        files = tmp_path / "instances" / name / "files"
        files.mkdir()
        for i in range(10):
            (files / f"f{i}").write_text("x")
    assert refused(tmp_path, Limits(max_files=30)) == [
        "instances: hold more than 30 files together; expected at most 30 files (limit "
        "max_files: raise it with --max-files or the service setting max_files)"
    ]
    assert "--max-files" in cli_refuses(tmp_path, "--max-files", "30")
    assert len(load_repo(tmp_path, limits=Limits(max_files=33)).instances) == 3


@pytest.mark.parametrize(
    "value, message",
    [
        ("1" * 5000, "invalid YAML value: a number longer than 4300 digits"),
        ("2001-02-30", "invalid YAML value: day is out of range for month"),
    ],
    ids=["long-integer", "impossible-date"],
)
def test_scalars_their_type_cannot_hold_are_problems(
    tmp_path: Path, value: str, message: str
) -> None:
    instance(tmp_path, SITE + f"extra: {value}\n")
    assert refused(tmp_path) == [f"instances/x/apps.config: {message}"]
    cli_refuses(tmp_path)


def test_bytes_of_all_instances_together_are_bounded(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        instance(tmp_path, SITE.replace("site.example.org", f"{name}.example.org"), name=name)
        (tmp_path / "instances" / name / "files").mkdir()
        with open(tmp_path / "instances" / name / "files" / "disk.img", "wb") as handle:
            handle.truncate(10 << 20)  # each within max_shipped_bytes, 30 MiB together
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    found = refused(tmp_path, Limits(max_total_bytes=20 << 20))
    assert found == [
        f"instances: hold {total} bytes together (the largest: instances/c/files/disk.img, "
        f"{10 << 20} bytes); expected at most "
        f"{20 << 20} bytes (limit max_total_bytes: raise it with --max-total-bytes or the "
        "service setting max_total_bytes)"
    ]
    assert "--max-total-bytes" in cli_refuses(tmp_path, "--max-total-bytes", str(20 << 20))
    assert len(load_repo(tmp_path).instances) == 3
