"""How much work one config repository may ask for before validation says no.

A pushed repository is input from whoever can push: a YAML alias bomb, a
30 MB `apps.config`, `[[[[...` nested past Python's recursion limit,
thousands of instance directories or a 2 GB file under `files/` would each
hold a worker (or `swapyard validate`) for minutes, or exhaust its memory,
before any schema could refuse them. Every such dimension gets one limit
here, checked before the costly step it guards: a file's size from `stat`
(or git's object header) before its content is read, the YAML nodes and
nesting depth from the parser's event stream before a document is built
(aliases counted as the nodes they expand to, so a small `<<: *defaults`
costs what it adds and a billion laughs is refused after a few events).

The limits are declared once, as the fields of `Limits` with their help
text; the CLI options (`--max-file-bytes`, ...), the service settings
(`max_file_bytes`, ...) and the documentation are generated from them, and a
refusal names the limit and both ways to raise it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

MiB = 1024 * 1024


def _limit(default: int, unit: str, help: str, ceiling: int | None = None) -> Any:
    return field(default=default, metadata={"unit": unit, "help": help, "ceiling": ceiling})


@dataclass(frozen=True)
class Limits:
    """The bounds a config repository is read within (defaults fit any sane repository)."""

    max_file_bytes: int = _limit(
        1 * MiB, "bytes", "Largest `apps.config` or `swapyard.yaml`, checked before reading it."
    )
    max_yaml_nodes: int = _limit(
        20_000,
        "nodes",
        "Most YAML nodes (keys, values, items) one file may hold, each alias counted as "
        "the nodes it expands to.",
    )
    max_yaml_depth: int = _limit(
        32,
        "levels",
        "Deepest nesting of mappings and lists in one file, aliases expanded.",
        # validation walks a document recursively: deeper would risk Python's recursion limit
        ceiling=100,
    )
    max_instances: int = _limit(
        1_000, "directories", "Most entries under `instances/` in one repository."
    )
    max_files: int = _limit(
        10_000,
        "files",
        "Most files one repository may give swapyard to read: every `apps.config` and "
        "everything under every `files/`.",
    )
    max_total_bytes: int = _limit(
        256 * MiB,
        "bytes",
        "Most bytes one repository may give swapyard to read: every `apps.config` and "
        "shipped file together, checked before any is read.",
    )
    max_shipped_files: int = _limit(
        1_000, "files", "Most files (and directories) under one `instances/<name>/files/`."
    )
    max_shipped_bytes: int = _limit(
        16 * MiB,
        "bytes",
        "Most bytes under one `instances/<name>/files/`, all files together; ship larger "
        "data through the data volume or an image.",
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            ceiling = f.metadata["ceiling"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name}: expected a positive whole number, found {value!r}")
            if ceiling is not None and value > ceiling:
                raise ValueError(f"{f.name}: expected at most {ceiling}, found {value}")

    def exceeded(self, name: str, found: str) -> str:
        """A refusal: what was found, the limit, and how to raise it."""
        value = getattr(self, name)
        unit = LIMIT_FIELDS[name].metadata["unit"]
        return (
            f"{found}; expected at most {value} {unit} (limit {name}: raise it with "
            f"--{option_name(name)} or the service setting {name})"
        )

    def with_values(self, values: dict[str, Any]) -> Limits:
        """These limits with some replaced (None: keep), e.g. from CLI options."""
        return replace(self, **{k: int(v) for k, v in values.items() if v is not None})


LIMIT_FIELDS = {f.name: f for f in fields(Limits)}
DEFAULT_LIMITS = Limits()


def option_name(name: str) -> str:
    """`max_file_bytes` -> `max-file-bytes` (the CLI option, without its dashes)."""
    return name.replace("_", "-")


def limits_markdown() -> str:
    """The limits as a Markdown table, for the generated config reference."""
    lines = [
        "| limit | default | CLI option | what it bounds |",
        "|---|---|---|---|",
    ]
    for f in fields(Limits):
        lines.append(
            f"| `{f.name}` | {f.default} {f.metadata['unit']} | `--{option_name(f.name)}` "
            f"| {f.metadata['help']} |"
        )
    return "\n".join(lines) + "\n"
