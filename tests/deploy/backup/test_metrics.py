"""Backup metrics from the journal, without Docker or restic."""

from __future__ import annotations

from pathlib import Path

from deploy.backup.journal import BackupJournal, RunState
from deploy.backup.metrics import prometheus_text


def test_metrics_show_the_last_runs_and_open_alerts(tmp_path: Path) -> None:
    h = BackupJournal(f"sqlite:///{tmp_path / 'm.db'}")
    ok = h.begin("p", "blog", "backup", mode="stop")
    h.finish(ok, RunState.SUCCEEDED, bytes=1234, window=1.5)
    bad = h.begin("p", "blog", "backup", mode="stop")
    h.finish(bad, RunState.FAILED, error="wrong password", window=0.7)
    h.begin("p", "shop", "backup")  # still running: not a last run yet
    h.raise_alert("p", "blog", "failed", "backup 2: wrong password")
    text = prometheus_text(h)
    assert 'swapyard_backup_last_run_success{instance="blog",project="p"} 0' in text
    assert 'swapyard_backup_last_window_seconds{instance="blog",project="p"} 0.700' in text
    assert 'swapyard_backup_last_bytes{instance="blog",project="p"} 1234' in text
    assert 'swapyard_backup_last_success_timestamp_seconds{instance="blog",project="p"} ' in text
    assert (
        'swapyard_backup_runs_total{instance="blog",kind="backup",project="p",state="failed"} 1'
        in text
    )
    assert 'swapyard_backup_alert{instance="blog",kind="failed",project="p"} 1' in text
    assert 'instance="shop",project="p"} 0' not in text
    assert "wrong password" not in text
