"""Turn cerberus's error tree into `Problem`s a person can act on.

Each leaf error becomes one line: the file and line, the field path, what was
found and what is expected. Values of secret fields are never echoed: a
password pasted into git by mistake must not also land in CI logs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from cerberus import errors as E

from schemas.apps_config import ABS_PATH, ENV_NAME, HOSTNAME, NAME, REL_PATH, SECRET_REF
from schemas.errors import Problem
from schemas.yamlfile import YamlDocument, field_path

_REGEX_WORDS = {
    HOSTNAME: "a hostname (lowercase letters, digits, '-' and '.')",
    NAME: "a name of lowercase letters, digits and '-', starting with a letter (at most 30)",
    ENV_NAME: "an environment variable name (letters, digits and '_')",
    ABS_PATH: "an absolute path",
    REL_PATH: "a relative path",
}

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "boolean": "true or false",
    "dict": "a mapping (key: value)",
    "list": "a list",
    "float": "a number",
}


def _describe(value: Any) -> str:
    kinds = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing (null)",
    }
    kind = kinds.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


def _rule_definition(schema: dict[str, Any], schema_path: tuple[Any, ...]) -> dict[str, Any]:
    """The definition that holds the failed rule (schema_path minus the rule name)."""
    node: Any = schema
    for key in schema_path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return {}
        node = node[key]
    return node if isinstance(node, dict) else {}


def _type_words(constraint: Any) -> str:
    kinds = constraint if isinstance(constraint, list) else [constraint]
    return " or ".join(_TYPE_WORDS.get(str(k), str(k)) for k in kinds)


def _message(error: Any, schema: dict[str, Any], allowed_fields: list[str]) -> str:
    definition = _rule_definition(schema, error.schema_path)
    meta = definition.get("meta", {})
    value = error.value
    code = error.code
    if code == E.REQUIRED_FIELD.code:
        return "is required but missing"
    if code == E.UNKNOWN_FIELD.code:
        name = str(error.document_path[-1]) if error.document_path else ""
        close = difflib.get_close_matches(name, allowed_fields, n=1)
        allowed = ", ".join(allowed_fields)
        if close:
            hint = f" Expected one of: {allowed}" if allowed_fields else ""
            return f"unknown field; did you mean {close[0]!r}?{hint}"
        return f"unknown field; expected one of: {allowed}" if allowed_fields else "unknown field"
    if code == E.BAD_TYPE.code:
        return f"found {_describe(value)}; expected {_type_words(error.constraint)}"
    if code == E.NOT_NULLABLE.code:
        return "is empty (null); expected a value"
    if code == E.REGEX_MISMATCH.code:
        if error.constraint == SECRET_REF:
            return (
                "found an inline value; expected a reference secret:NAME "
                "(put the value in the secret store, never in git)"
            )
        words = meta.get("expected") or _REGEX_WORDS.get(error.constraint)
        return (
            f"found {_describe(value)}; expected {words or 'a value matching ' + error.constraint}"
        )
    if code == E.UNALLOWED_VALUE.code:
        return f"found {_describe(value)}; expected one of: {', '.join(map(str, error.constraint))}"
    if code == E.MIN_VALUE.code:
        return f"found {value!r}; expected at least {error.constraint}"
    if code == E.MAX_VALUE.code:
        return f"found {value!r}; expected at most {error.constraint}"
    if code == E.MIN_LENGTH.code:
        return f"found {len(value)} item(s); expected at least {error.constraint}"
    if code == E.MAX_LENGTH.code:
        return f"found {len(value)} item(s); expected at most {error.constraint}"
    if code == E.COERCION_FAILED.code:
        return f"found {_describe(value)}; could not be converted"
    if code == E.CUSTOM.code and error.info:
        return str(error.info[0])
    return f"found {_describe(value)}; failed the {error.rule or 'schema'} rule"


def _leaves(errors: Iterable[Any]) -> Iterable[Any]:
    for error in errors:
        if error.is_group_error:
            yield from _leaves(error.child_errors)
        else:
            yield error


def _allowed_fields(schema: dict[str, Any], schema_path: tuple[Any, ...]) -> list[str]:
    """Field names allowed beside an unknown one (cerberus points at the parent's schema)."""
    node: Any = schema
    for key in schema_path:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return sorted(node) if isinstance(node, dict) else []


def problems_from(
    validator_errors: Iterable[Any],
    schema: dict[str, Any],
    filename: str,
    doc: YamlDocument,
    prefix: tuple[Any, ...] = (),
) -> list[Problem]:
    """Flatten cerberus errors into Problems located in `doc`."""
    out = []
    for error in _leaves(validator_errors):
        path = (*prefix, *error.document_path)
        allowed = (
            _allowed_fields(schema, error.schema_path) if error.code == E.UNKNOWN_FIELD.code else []
        )
        out.append(
            Problem(filename, doc.line(path), field_path(path), _message(error, schema, allowed))
        )
    return out
