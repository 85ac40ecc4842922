"""Strict YAML reading that remembers where every value came from.

PyYAML silently keeps the last of two equal keys and reports errors as
tracebacks; here a duplicate key is an error, a syntax error becomes a
`Problem` with line and column, and every path in the document maps to the
line it was written on, so validation errors can point at the line.

Before a document is built, its parser events are counted against `Limits`
(`_guard`): nodes with every alias expanded, and nesting depth. Building the
node tree, the line map, the merge with defaults and cerberus all walk the
document as expanded, so a bounded expansion bounds them all; counting
events costs one pass and needs memory for the open collections only.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from schemas.errors import ConfigError, Problem
from schemas.limits import DEFAULT_LIMITS, Limits

Path = tuple[str | int, ...]


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKeys:
    """A SafeConstructor mixin that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
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
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _StrictLoader(_DuplicateKeys, yaml.SafeLoader):
    """The pure-Python parser: its error messages are the ones users see."""


# libyaml parses ~10x faster (a 200-instance repository spent most of its load time in
# the pure-Python scanner); on any error the file is parsed again by _StrictLoader, so
# messages stay the same whichever parser is installed.
_FastLoader: type[Any] = (
    type("_FastLoader", (_DuplicateKeys, yaml.CSafeLoader), {})
    if getattr(yaml, "__with_libyaml__", False)
    else _StrictLoader
)


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


def _load(loader_class: type[Any], text: str) -> tuple[yaml.Node | None, Any]:
    """One parse: the node tree gives the lines, the data is constructed from it."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


_COLLECTION_START = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_COLLECTION_END = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class _Open:
    """A collection whose end event has not come yet."""

    __slots__ = ("anchor", "deepest", "nodes_before")

    def __init__(self, anchor: str | None, nodes_before: int, depth: int):
        self.anchor = anchor
        self.nodes_before = nodes_before
        self.deepest = depth


def _guard(loader_class: type[Any], text: str, filename: str, limits: Limits) -> None:
    """Refuse a document whose expansion exceeds the node or depth limit, from its events.

    `nodes` counts every node as the document would be walked: an alias adds the
    node count of its anchor's node; `depth` likewise adds the anchor's depth. An
    alias to a collection still open (a recursive structure) is refused too.
    YAML errors are left for the caller's parse to report."""
    expanded: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, depth below it, itself included)
    stack: list[_Open] = []
    nodes = 0

    def refuse(event: yaml.Event, message: str) -> ConfigError:
        line = event.start_mark.line + 1 if event.start_mark else None
        return ConfigError([Problem(filename, line, "", message)])

    try:
        loader = loader_class(text)
    except yaml.YAMLError:
        return  # an unreadable character: reported by the parse that follows
    try:
        while loader.check_event():
            event = loader.get_event()
            depth = len(stack)
            if isinstance(event, _COLLECTION_START):
                nodes += 1
                stack.append(_Open(event.anchor, nodes - 1, depth + 1))
                if depth + 1 > limits.max_yaml_depth:
                    raise refuse(event, limits.exceeded("max_yaml_depth", "nested too deeply"))
                reached = depth + 1
                anchor = None  # recorded at its end event
            elif isinstance(event, _COLLECTION_END):
                closed = stack.pop()
                anchor, reached = closed.anchor, closed.deepest
                if anchor is not None:
                    expanded[anchor] = (nodes - closed.nodes_before, reached - depth)
            elif isinstance(event, yaml.ScalarEvent):
                nodes += 1
                anchor, reached = event.anchor, depth
                if anchor is not None:
                    expanded[anchor] = (1, 0)
            elif isinstance(event, yaml.AliasEvent):
                if any(o.anchor == event.anchor for o in stack):
                    raise refuse(
                        event,
                        f"the alias *{event.anchor} refers to a collection that contains it; "
                        "expected a structure without cycles",
                    )
                count, below = expanded.get(event.anchor or "", (1, 0))
                nodes += count
                anchor, reached = None, depth + below
                if reached > limits.max_yaml_depth:
                    raise refuse(
                        event,
                        limits.exceeded(
                            "max_yaml_depth", f"the alias *{event.anchor} nests too deeply"
                        ),
                    )
            else:
                continue
            if nodes > limits.max_yaml_nodes:
                what = (
                    f"with the alias *{event.anchor} " if isinstance(event, yaml.AliasEvent) else ""
                )
                raise refuse(
                    event,
                    limits.exceeded(
                        "max_yaml_nodes",
                        f"the document {what}expands to more than {limits.max_yaml_nodes} "
                        "YAML nodes",
                    ),
                )
            if stack:
                stack[-1].deepest = max(stack[-1].deepest, reached)
    except yaml.YAMLError:
        return  # reported by the parse that follows, with its line and column
    finally:
        loader.dispose()


def parse_yaml(text: str, filename: str, limits: Limits = DEFAULT_LIMITS) -> YamlDocument:
    """Parse one YAML document; raise ConfigError with line and column on bad syntax,
    or when it would expand past `limits` (nodes, depth)."""
    _guard(_FastLoader, text, filename, limits)
    try:
        node, data = _load(_FastLoader, text)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError):
        if _FastLoader is not _StrictLoader:  # its parser may read further than libyaml's
            _guard(_StrictLoader, text, filename, limits)
        node, data = _parse_reporting(text, filename)
    lines: dict[Path, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return YamlDocument(data, lines)


def _parse_reporting(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """Parse with the pure-Python loader, turning its errors into a ConfigError."""
    try:
        return _load(_StrictLoader, text)
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
    except (ValueError, TypeError) as exc:  # a scalar its type cannot hold: 2001-02-30, 10**5000
        why = str(exc)
        if "integer string conversion" in why:  # Python's own bound on int() of a long string
            why = f"a number longer than {sys.get_int_max_str_digits()} digits"
        raise ConfigError([Problem(filename, None, "", f"invalid YAML value: {why}")]) from None


def field_path(path: Path) -> str:
    """`('apps', 1, 'domains', 0)` -> `apps[1].domains[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
