"""Strict YAML reading that remembers where every value came from.

PyYAML silently keeps the last of two equal keys and reports errors as
tracebacks; here a duplicate key is an error, a syntax error becomes a
`Problem` with line and column, and every path in the document maps to the
line it was written on, so validation errors can point at the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError, Problem

Path = tuple[str | int, ...]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r}; each key may appear once",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _lines(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                out[(*path, key_node.value)] = key_node.start_mark.line + 1
                _lines(value_node, (*path, key_node.value), out)
                out[(*path, key_node.value)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


class YamlDocument:
    """A parsed YAML file: its data and a path -> line map."""

    def __init__(self, data: Any, lines: dict[Path, int]):
        self.data = data
        self._lines = lines

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that exists in the file."""
        while True:
            if path in self._lines:
                return self._lines[path]
            if not path:
                return None
            path = path[:-1]

    def has(self, path: Path) -> bool:
        return path in self._lines


def parse_yaml(text: str, filename: str) -> YamlDocument:
    """Parse one YAML document; raise ConfigError with line and column on bad syntax."""
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = f"column {mark.column + 1}: " if mark else ""
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        if "block" in problem:
            problem += " (check the indentation)"
        raise ConfigError(
            [Problem(filename, line, "", f"{column}invalid YAML: {problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(filename, None, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError(
            [Problem(filename, None, "", "invalid YAML: nested too deeply")]
        ) from None
    lines: dict[Path, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return YamlDocument(data, lines)


def field_path(path: Path) -> str:
    """`('apps', 1, 'domains', 0)` -> `apps[1].domains[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
