"""The one place a config value that may be a secret becomes text.

Redacted renders show a `SecretRef` as its placeholder `<secret:NAME>`;
resolved renders ask `RenderOptions.secrets` for the value. Nothing else in
`renderers/` looks at secret values, so redaction cannot be forgotten.
"""

from __future__ import annotations

from renderers.artifacts import RenderOptions
from schemas.errors import RenderError, SecretNotFound
from schemas.model import SecretRef, Value


def check_options(options: RenderOptions) -> None:
    """Refuse a resolved render that has no way to look secrets up.

    Raised up front, so a resolved render fails the same way whether or not
    the instance happens to reference a secret.
    """
    if options.mode == "resolved" and options.secrets is None:
        raise RenderError(
            "a resolved render needs RenderOptions.secrets (a name -> value lookup); "
            "pass one, or render with mode='redacted'"
        )
    if options.mode not in ("redacted", "resolved"):
        raise RenderError(
            f"unknown render mode {options.mode!r}; expected 'redacted' or 'resolved'"
        )


def text(value: Value, options: RenderOptions) -> str:
    """The text of a config value: plain strings as they are, secrets per the mode.

    Raises `SecretNotFound` when a resolved render's lookup has no value for
    the name (a missing key, or None).
    """
    if not isinstance(value, SecretRef):
        return value
    if options.mode == "redacted":
        return value.placeholder
    check_options(options)
    assert options.secrets is not None
    try:
        resolved = options.secrets(value.name)
    except KeyError as exc:
        raise SecretNotFound(value.name) from exc
    if resolved is None:
        raise SecretNotFound(value.name)
    return str(resolved)


def placeholder(value: SecretRef | None) -> str | None:
    """A secret's placeholder whatever the mode (for settings kept outside the instance)."""
    return value.placeholder if value is not None else None
