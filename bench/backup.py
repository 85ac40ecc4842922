"""Benchmark: the maintenance window of a backup (first 503 to first 200 seen by a client).

For 100 MB and 2 GB of data, in stop mode (ext4: writers stopped for the
whole backup) and in snapshot mode (btrfs: writers stopped only for the
snapshot). Real Docker, real restic, a local repository. Not a test: it
prints the figures side by side with their ratios and asserts nothing.
Goal: in snapshot mode the 2 GB window at most 1.5 times the 100 MB one.

    sudo .venv/bin/python bench/backup.py [--sizes 100,2048]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.backup import BackupRunner
from deploy.backupjournal import BackupJournal
from deploy.local import LocalProvider
from deploy.restic import ResticRepo
from deploy.spec import VolumeSpec
from deploy.sqljournal import SqlJournal
from deploy.swap import SwapEngine
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


def measure(image: str, work: Path, megabytes: int, filesystem: str) -> tuple[float, float]:
    """One fresh instance and repository; returns (client-seen window, journaled window)."""
    project = "b" + secrets.token_hex(3)
    provider = LocalProvider(
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
        assert out.status == "success", out.message
        volume = provider.get_volume(spec.volume.id)
        assert volume is not None
        fill(provider.volume_path(volume), megabytes)
        repo = ResticRepo(str(work / f"repo-{project}"), {"RESTIC_PASSWORD": project})
        repo.init_if_missing()
        poller = Poller(provider.edge.listen[0])
        poller.start()
        runner = BackupRunner(provider, swaps, BackupJournal(swaps.engine))
        run = runner.run(project, "demo", repo)
        time.sleep(0.3)
        poller.stop.set()
        poller.join()
        assert run.state == "succeeded", run.error
        return poller.window, run.window or float("nan")
    finally:
        cleanup(provider, client, project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,2048", help="data sizes in MB")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    import docker

    image = build_image(docker.from_env())
    results: dict[tuple[int, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="swapyard-bench-") as tmp:
        for mb in sizes:
            for mode, fs in (("stop", "ext4"), ("snapshot", "btrfs")):
                results[(mb, mode)] = measure(image, Path(tmp), mb, fs)
                seen, journaled = results[(mb, mode)]
                print(f"  {mb:>5} MB {mode:<8} window {seen:6.2f} s (journal {journaled:.2f} s)")
    print()
    print(f"{'data':>8} | {'stop':>8} | {'snapshot':>8} | stop/snapshot")
    for mb in sizes:
        stop, snap = results[(mb, "stop")][0], results[(mb, "snapshot")][0]
        print(f"{mb:>5} MB | {stop:7.2f}s | {snap:7.2f}s | {stop / snap:6.1f}x")
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for mode in ("stop", "snapshot"):
            ratio = results[(hi, mode)][0] / results[(lo, mode)][0]
            goal = " (goal <= 1.5)" if mode == "snapshot" else ""
            print(f"{mode:>8}: {hi} MB window / {lo} MB window = {ratio:.2f}{goal}")


if __name__ == "__main__":
    main()
