"""TXT quoting shared by the API drivers: what they send is what they read back."""

from __future__ import annotations

import pytest

from deploy.dns.txt import quote_txt, unquote_txt


@pytest.mark.parametrize(
    "text",
    ["", "swapyard", 'a "quoted" word', "back\\slash", "x" * 255, "y" * 600, "é" * 200],
)
def test_round_trip(text: str) -> None:
    assert unquote_txt(quote_txt(text)) == text


def test_long_text_is_split_into_strings_of_at_most_255_bytes() -> None:
    quoted = quote_txt("é" * 200)  # 400 bytes: two strings, split between characters
    strings = quoted.split('" "')
    assert len(strings) == 2
    assert all(len(s.strip('"').encode()) <= 255 for s in strings)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('"a" "b"', "ab"),
        ('"with \\"quote\\""', 'with "quote"'),
        ('"\\052.example"', "*.example"),  # Route 53's octal escape
        ('"\\303\\251t\\303\\251"', "été"),  # UTF-8 bytes, each escaped
    ],
)
def test_unquote(value: str, text: str) -> None:
    assert unquote_txt(value) == text
