"""Journaled steps, shared by the swap engine and the backups: `runner` runs one step and
records how it ended, `sql` is what their journals share on SQL (engine, step rows, times)."""
