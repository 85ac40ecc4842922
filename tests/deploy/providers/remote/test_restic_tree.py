"""The restic job runner's file listing: busybox `stat` lines to a tree (pure)."""

from __future__ import annotations

from deploy.providers.remote.restic import parse_tree


def test_kinds_and_sizes() -> None:
    text = (
        "directory|4096|./notes\n"
        "regular file|6|./notes/notes.txt\n"
        "regular empty file|0|./empty\n"
        "symbolic link|9|./link\n"
        "fifo|0|./pipe\n"
    )
    assert parse_tree(text) == {
        "notes": ("dir", 0),
        "notes/notes.txt": ("file", 6),
        "empty": ("file", 0),
        "link": ("symlink", 0),
        "pipe": ("other", 0),
    }


def test_a_name_with_a_newline_or_a_bar_stays_one_entry() -> None:
    text = "regular file|3|./two\nlines\nregular file|1|./a|b\n"
    assert parse_tree(text) == {"two\nlines": ("file", 3), "a|b": ("file", 1)}


def test_empty_listing() -> None:
    assert parse_tree("") == {}
