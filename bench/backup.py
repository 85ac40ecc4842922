"""Benchmark: the maintenance window of a backup (first 503 to first 200 seen by a client).

For 100 MB and 2 GB of data written just before the backup (still in the
page cache), in stop mode (ext4: writers stopped for the whole backup), in
snapshot mode (btrfs: the volume flushed while the apps serve, writers
stopped only for the snapshot) and, as the baseline, snapshot mode without
that flush (the snapshot then writes the dirty data inside the window).
Each case runs `--runs` times (default 3) on a fresh instance and
repository. Real Docker, real restic, a local repository. Not a test: it
prints min/median/max of every window and of the large/small ratio, and
asserts nothing. Goal: in snapshot mode the 2 GB window at most 1.5 times
the 100 MB one.

    sudo .venv/bin/python bench/backup.py [--sizes 100,2048] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.backup.journal import BackupJournal, steps
from deploy.backup.restic import ResticRepo
from deploy.backup.run import BackupRunner
from deploy.providers.base import VolumeHandle
from deploy.providers.local.provider import LocalProvider
from deploy.spec import VolumeSpec
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.conftest import cleanup, free_port
from tests.deploy.fixtures import build_image, make_ignition, make_spec


class Poller(threading.Thread):
    """GETs the writer app every 10 ms; records the first 503 and the first 200 after it."""

    def __init__(self, edge: str):
        super().__init__(daemon=True)
        self.url = f"http://{edge}/cgi-bin/list"
        self.first_503: float | None = None
        self.back_200: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                code = session.get(self.url, headers={"Host": "notes.test"}, timeout=5).status_code
            except requests.RequestException:
                code = 0
            now = time.monotonic()
            if code == 503 and self.first_503 is None:
                self.first_503 = now
            elif code == 200 and self.first_503 is not None and self.back_200 is None:
                self.back_200 = now
            time.sleep(0.01)

    @property
    def window(self) -> float:
        if self.first_503 is None or self.back_200 is None:
            return float("nan")
        return self.back_200 - self.first_503


def fill(root: Path, megabytes: int) -> None:
    bulk = root / "notes" / "bulk"
    bulk.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(1 << 20)
    for i in range(megabytes):  # distinct chunks so restic cannot deduplicate them
        (bulk / f"part{i:05d}").write_bytes(i.to_bytes(8, "little") + chunk[8:])


class NoFlushProvider(LocalProvider):
    """The baseline: the local provider without the flush before the snapshot."""

    def flush_volume(self, volume: VolumeHandle) -> None:
        """Nothing: the snapshot writes the dirty data inside the window."""


MODES = {  # name -> (filesystem, backup mode, provider class)
    "stop": ("ext4", "stop", LocalProvider),
    "snapshot": ("btrfs", "snapshot", LocalProvider),
    "snapshot-noflush": ("btrfs", "snapshot", NoFlushProvider),
}


def step_times(history: BackupJournal, run_id: int) -> str:
    """`step=seconds` of each journaled step, in order (where the window goes)."""
    with history.engine.connect() as conn:
        rows = conn.execute(
            sa.select(steps.c.step, steps.c.started, steps.c.finished)
            .where(steps.c.run_id == run_id)
            .order_by(steps.c.id)
        ).all()
    return " ".join(
        f"{r.step}={(r.finished - r.started).total_seconds():.2f}" for r in rows if r.finished
    )


def measure(image: str, work: Path, megabytes: int, mode: str) -> tuple[float, float, float, str]:
    """One fresh instance and repository: client-seen and journaled window, restic s, steps."""
    filesystem, backup_mode, provider_class = MODES[mode]
    project = "b" + secrets.token_hex(3)
    provider = provider_class(
        work / f"state-{project}",
        ex_edge_listen=(f"127.0.0.1:{free_port()}",),
        ex_edge_admin=f"127.0.0.1:{free_port()}",
        ex_stop_timeout=5,
    )
    import docker

    client = docker.from_env()
    try:
        swaps = SqlJournal(f"sqlite:///{work / (project + '.db')}")
        spec = make_spec(project, make_ignition(image, "v1"), "a" * 40)
        size = max(512 << 20, int(megabytes * 1.5) << 20)
        spec = replace(spec, volume=VolumeSpec(spec.volume.id, "sydata", size, filesystem))
        out = SwapEngine(provider, swaps, ready_timeout=60).deploy(spec)
        assert out.status == "success", out.summary
        volume = provider.get_volume(spec.volume.id)
        assert volume is not None
        fill(provider.volume_path(volume), megabytes)
        repo = ResticRepo(str(work / f"repo-{project}"), {"RESTIC_PASSWORD": project})
        repo.init_if_missing()
        poller = Poller(provider.edge.listen[0])
        poller.start()
        history = BackupJournal(swaps.engine)
        runner = BackupRunner(provider, swaps, history, health_interval=0.1)
        run = runner.run(project, "demo", repo, mode=backup_mode)
        time.sleep(0.3)
        poller.stop.set()
        poller.join()
        assert run.state == "succeeded", run.error
        nan = float("nan")
        return poller.window, run.window or nan, run.duration or nan, step_times(history, run.id)
    finally:
        cleanup(provider, client, project)


def spread(values: list[float]) -> str:
    """min/median/max of some seconds or ratios."""
    return "/".join(f"{v:.2f}" for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100,2048", help="data sizes in MB")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case")
    parser.add_argument("--modes", default=",".join(MODES), help="of " + ", ".join(MODES))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    import docker

    image = build_image(docker.from_env())
    seen: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="swapyard-bench-") as tmp:
        for run in range(args.runs):
            for mb in sizes:
                for mode in modes:
                    window, journaled, restic, times = measure(image, Path(tmp), mb, mode)
                    seen.setdefault((mb, mode), []).append(window)
                    print(
                        f"  run {run + 1}: {mb:>5} MB {mode:<16} window {window:6.2f} s "
                        f"(journal {journaled:.2f} s, restic {restic:.2f} s)",
                        flush=True,
                    )
                    print(f"      steps (s): {times}", flush=True)
    print()
    print(f"client-seen window in s, min/median/max of {args.runs} runs")
    print(f"{'data':>8} | " + " | ".join(f"{m:>16}" for m in modes))
    for mb in sizes:
        print(f"{mb:>5} MB | " + " | ".join(f"{spread(seen[(mb, m)]):>16}" for m in modes))
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print()
        print(f"{hi} MB window / {lo} MB window, run by run, min/median/max:")
        for mode in modes:
            ratios = [h / low for h, low in zip(seen[(hi, mode)], seen[(lo, mode)], strict=True)]
            goal = "  (goal: at most 1.5)" if mode == "snapshot" else ""
            print(f"{mode:>16}: {spread(ratios)}{goal}")


if __name__ == "__main__":
    main()
