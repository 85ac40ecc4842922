"""Git facts that receiving and processing both rely on."""

from __future__ import annotations

ZERO_SHA = "0" * 40  # a ref's "before" when it was created, its "after" when it was deleted
