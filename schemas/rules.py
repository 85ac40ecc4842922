"""The cerberus validator with swapyard's own rules, and the size and image grammar.

`check_with` rules each word what they expect, for the error message.
"""

from __future__ import annotations

import re
import zoneinfo
from functools import cache
from typing import Any

import cerberus
from croniter import croniter

_SIZE = re.compile(r"([1-9][0-9]*)([MGT])")
_SIZE_FACTORS = {"M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_IMAGE = re.compile(
    r"(?P<name>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?"
)


def parse_size(text: str) -> int | None:
    """`10G` -> bytes (binary units); None when it is not a size."""
    match = _SIZE.fullmatch(text)
    return int(match[1]) * _SIZE_FACTORS[match[2]] if match else None


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


class ConfigValidator(cerberus.Validator):
    """cerberus with swapyard's checks; each custom error says what is expected."""

    def _check_with_image(self, field: str, value: str | None) -> None:
        if value is None:  # cerberus runs check_with on null too; `nullable` decides that
            return
        match = _IMAGE.fullmatch(value)
        if not match:
            self._error(field, f"found {value!r}; expected an image reference such as name:1.2.3")
        elif not match["tag"] and not match["digest"]:
            self._error(
                field,
                f"found {value!r} without a tag; expected e.g. {value}:1.2.3 "
                "(an untagged image changes under you)",
            )
        elif match["tag"] == "latest" and not match["digest"]:
            self._error(field, f"found {value!r}; expected a pinned tag, not 'latest'")

    def _check_with_size(self, field: str, value: str | None) -> None:
        if value is None:
            return
        size = parse_size(value)
        if size is None or size < 64 * _SIZE_FACTORS["M"]:
            self._error(
                field, f"found {value!r}; expected a size such as 512M, 10G or 1T (at least 64M)"
            )

    def _check_with_cron(self, field: str, value: str | None) -> None:
        if value is None:
            return
        if len(value.split()) != 5 or not croniter.is_valid(value):
            self._error(
                field,
                f"found {value!r}; expected a 5-field cron expression "
                "(minute hour day month weekday), e.g. '0 3 * * *'",
            )

    def _check_with_timezone(self, field: str, value: str | None) -> None:
        if value is None:
            return
        if value not in _timezones():
            self._error(field, f"found {value!r}; expected an IANA timezone, e.g. Europe/Berlin")

    def _normalize_coerce_to_env_string(self, value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)


class _ByIdentity:
    """A schema dict as a cache key, by identity: dicts are not hashable, and the
    schemas validated against are module constants that live as long as the process."""

    __slots__ = ("schema",)

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema

    def __hash__(self) -> int:
        return id(self.schema)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.schema is self.schema


@cache
def _definition(key: _ByIdentity) -> cerberus.schema.DefinitionSchema:
    return cerberus.schema.DefinitionSchema(ConfigValidator(), key.schema)


def validator_for(schema: dict[str, Any]) -> ConfigValidator:
    """A fresh validator (it holds the document: one per validation) whose schema was
    checked once per process instead of once per validator. cerberus hashes the whole
    schema to check it, which was most of the time of loading a large repository."""
    return ConfigValidator(_definition(_ByIdentity(schema)))
