"""Export the cerberus declarations: JSON Schema for editors, Markdown for the docs.

Both are generated, never written by hand: `swapyard schema` prints the JSON
Schema (point an editor's YAML language server at it to complete and check
`apps.config` while typing), and docs/config-reference.md is
`swapyard schema --format markdown`; a test fails when the file is stale.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.apps_config import APPS_CONFIG, REPO_CONFIG
from schemas.catalog import CATALOG
from schemas.limits import limits_markdown

_TYPES = {
    "string": "string",
    "integer": "integer",
    "boolean": "boolean",
    "dict": "object",
    "list": "array",
    "float": "number",
}
_PATTERNS = {  # check_with rules that a pattern can express (approximately) for editors
    "size": r"^[1-9][0-9]*[MGT]$",
    "cron": r"^\S+(\s+\S+){4}$",
    "image": r"^[^\s:@]+(:[0-9]+)?[^\s:@]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[a-f0-9]{64})?$",
}


def _json_field(rules: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    meta = rules.get("meta", {})
    if "description" in meta:
        out["description"] = meta["description"]
    kinds = rules.get("type")
    if kinds:
        names = [_TYPES[k] for k in (kinds if isinstance(kinds, list) else [kinds])]
        if rules.get("nullable"):
            names.append("null")
        out["type"] = names[0] if len(names) == 1 else names
    if "regex" in rules:
        out["pattern"] = f"^(?:{rules['regex']})$"
    if rules.get("check_with") in _PATTERNS:
        out["pattern"] = _PATTERNS[rules["check_with"]]
    if "allowed" in rules:
        out["enum"] = list(rules["allowed"]) + ([None] if rules.get("nullable") else [])
    for ours, theirs in (("min", "minimum"), ("max", "maximum")):
        if ours in rules:
            out[theirs] = rules[ours]
    if "minlength" in rules:
        out["minItems"] = rules["minlength"]
    if "default" in rules and rules["default"] not in ({}, None):
        out["default"] = rules["default"]
    if "schema" in rules:
        if kinds == "dict":
            out.update(_json_object(rules["schema"]))
        elif kinds == "list":
            out["items"] = _json_field(rules["schema"])
    if "keysrules" in rules:
        out["propertyNames"] = _json_field(rules["keysrules"])
    if "valuesrules" in rules:
        out["additionalProperties"] = _json_field(rules["valuesrules"])
    return out


def _json_object(schema: dict[str, Any]) -> dict[str, Any]:
    required = sorted(k for k, v in schema.items() if v.get("required"))
    out: dict[str, Any] = {
        "type": "object",
        "properties": {k: _json_field(v) for k, v in schema.items()},
        "additionalProperties": False,
    }
    if required:
        out["required"] = required
    return out


def json_schema(which: str = "apps.config") -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of `apps.config` or `swapyard.yaml`."""
    root = _json_object(APPS_CONFIG if which == "apps.config" else REPO_CONFIG)
    if which == "apps.config":
        app = root["properties"]["apps"]["items"]
        app["allOf"] = [
            {
                "if": {"properties": {"catalog": {"const": name}}, "required": ["catalog"]},
                "then": {"properties": {"settings": _json_object(entry.settings)}},
            }
            for name, entry in sorted(CATALOG.items())
        ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://swapyard.dev/schema/{which}.json",
        "title": which,
        **root,
    }


def json_schema_text(which: str = "apps.config") -> str:
    return json.dumps(json_schema(which), indent=2, sort_keys=True) + "\n"


def _type_words(rules: dict[str, Any]) -> str:
    kinds = rules.get("type", "any")
    return " or ".join(kinds) if isinstance(kinds, list) else kinds


def _default_words(rules: dict[str, Any]) -> str:
    if rules.get("required"):
        return "**required**"
    default = rules.get("default")
    if default in (None, {}, []):
        return ""
    return f"`{json.dumps(default)}`"


def _rows(schema: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    for name, rules in schema.items():
        path = f"{prefix}{name}"
        meta = rules.get("meta", {})
        notes = meta.get("description", "")
        if "allowed" in rules:
            notes += " One of: " + ", ".join(f"`{v}`" for v in rules["allowed"]) + "."
        if meta.get("secret"):
            notes += " Secret: takes only `secret:NAME`."
        rows.append(f"| `{path}` | {_type_words(rules)} | {_default_words(rules)} | {notes} |")
        inner = rules.get("schema")
        if rules.get("type") == "dict" and isinstance(inner, dict):
            rows.extend(_rows(inner, f"{path}."))
        elif rules.get("type") == "list" and isinstance(inner, dict) and "schema" in inner:
            rows.extend(_rows(inner["schema"], f"{path}[]."))
    return rows


def _table(schema: dict[str, Any], prefix: str = "") -> str:
    head = "| field | type | default | description |\n|---|---|---|---|\n"
    return head + "\n".join(_rows(schema, prefix)) + "\n"


def markdown_reference() -> str:
    """The config reference as Markdown, generated from the schemas."""
    parts = [
        "# Config reference\n\n",
        "Generated from the cerberus schemas in `schemas/` by "
        "`swapyard schema --format markdown`; do not edit by hand.\n\n",
        "## `instances/<name>/apps.config`\n\n",
        "One immutable instance. The directory name is the instance name.\n\n",
        _table(APPS_CONFIG),
        "\n## Catalog apps\n\n",
        "Set `catalog:` on an app and give its `settings:`; catalog apps take no custom-app "
        "fields (`image`, `port`, ...).\n",
    ]
    for name, entry in sorted(CATALOG.items()):
        parts.append(f"\n### `{name}`\n\n{entry.description}\n")
        if entry.images:
            parts.append("\nImages: " + ", ".join(f"`{i}`" for i in entry.images) + ".\n")
        if entry.settings:
            parts.append("\n" + _table(entry.settings, "settings."))
    parts += [
        "\n## `swapyard.yaml`\n\n",
        "Optional, at the repository root: defaults merged under every `apps.config` "
        "(mappings merge key by key, lists are replaced; project defaults sit above the "
        "repo-wide ones, the instance's own values above both) and the projects that "
        "branches deploy to.\n\n",
        _table(REPO_CONFIG),
        "\n## Limits\n\n",
        "A repository is read within these bounds, so that no file in it can hold "
        "`swapyard validate` or a worker for long, or fill its memory: sizes are checked "
        "before a file is read, YAML nodes (each alias counted as the nodes it expands to) "
        "and nesting before a document is built. Symbolic links are refused anywhere "
        "swapyard reads, never followed. What goes past a limit is refused as "
        "`file:line: ...` naming the limit; raise one with its option on `validate`, "
        "`render` and `plan`, and for pushes with the service setting of the same name "
        "(see docs/service.md).\n\n",
        limits_markdown(),
    ]
    return "".join(parts)
