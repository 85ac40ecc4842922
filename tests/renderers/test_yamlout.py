"""The YAML emitter: what it writes, YAML reads back as the same data."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from renderers import render_instance
from renderers.yamlout import dump, scalar
from schemas.model import Instance

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
_keys = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=12)
_atoms = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), _text)
_docs = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(st.one_of(_atoms, st.dictionaries(_keys, inner, max_size=4)), max_size=4),
        st.dictionaries(_keys, inner, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _docs, max_size=6))
def test_round_trips_through_pyyaml(document: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(document)) == (document or {})


@given(_text)
def test_scalars_round_trip(value: str) -> None:
    assert yaml.safe_load(f"k: {scalar(value)}\n") == {"k": value}


def test_numbers_and_words_yaml_1_2_would_type_are_quoted() -> None:
    for value in (
        "0o17",
        "0x1F",
        "1e3",
        "1_000",
        ".inf",
        ".nan",
        "+1",
        "-1",
        "10s",
        "80:80",
        "true",
        "False",
        "yes",
        "on",
        "null",
        "~",
        "",
    ):
        assert scalar(value).startswith('"'), value
    for value in ("caddy:2.8.4", "${SWAPYARD_DATA:-/mnt/data}/x:/y", "unless-stopped", "app-a"):
        assert scalar(value) == value


def test_compose_files_equal_pyyaml_reading(instance: Instance) -> None:
    raw = render_instance(instance)["compose.yaml"]
    document = yaml.safe_load(raw)
    assert dump(document).encode() == raw
