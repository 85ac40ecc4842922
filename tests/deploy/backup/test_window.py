"""The maintenance window of a run comes from its journaled steps, and is shown as such."""

from __future__ import annotations

import time
from pathlib import Path

from deploy.backup.journal import BackupJournal, RunState
from service.cli.backup import _run_line


def journal_steps(h: BackupJournal, run_id: int, names: list[str], pause: float = 0.05) -> None:
    for name in names:
        h.step_started(run_id, name)
        time.sleep(pause)
        h.step_finished(run_id, name, True)


def test_the_window_runs_from_maintenance_on_to_maintenance_off(tmp_path: Path) -> None:
    h = BackupJournal(f"sqlite:///{tmp_path / 'w.db'}")
    run = h.begin("p", "blog", "backup", mode="snapshot")
    journal_steps(h, run, ["flush"], pause=0.3)  # before the page: not in the window
    before = time.monotonic()
    journal_steps(h, run, ["maintenance_on", "stop_writers", "snapshot", "start_writers"])
    assert h.window(run) is None  # the page is still on
    journal_steps(h, run, ["health_check", "maintenance_off"])
    page_on = time.monotonic() - before
    journal_steps(h, run, ["restic_backup"], pause=0.3)  # after the page: not in it either
    window = h.window(run)
    assert window is not None and page_on + 0.01 > window >= 6 * 0.05
    h.finish(run, RunState.SUCCEEDED, window=window, duration=0.3)
    words = " ".join(_run_line(h.get(run)).split())
    assert f"succeeded window {window:.2f} s restic 0.30 s" in words


def test_a_run_that_never_turned_the_page_on_has_no_window(tmp_path: Path) -> None:
    h = BackupJournal(f"sqlite:///{tmp_path / 'w.db'}")
    run = h.begin("p", "blog", "drill")
    journal_steps(h, run, ["restore"])
    assert h.window(run) is None
    h.finish(run, RunState.SUCCEEDED)
    assert "succeeded window - restic -" in " ".join(_run_line(h.get(run)).split())
