"""Placeholder CLI group; the real one (validate/render/plan/schema) lands from another branch."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """swapyard: a git push swaps an immutable server."""


from . import cli_service  # noqa: E402

cli_service.register(main)
