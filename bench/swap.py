"""Swap benchmark: a swap through the edge beside an in-place `docker compose up -d` recreate.

    .venv/bin/python bench/swap.py [--runs 3]
    .venv/bin/python bench/swap.py --swaps [100]
    .venv/bin/python bench/swap.py --provider lxd [--runs 3]

Needs root, a running dockerd, Debian's `caddy` and `busybox-static`, loop
devices; pulls nothing (the images are built locally, see `local_images`).

One three-app instance (a static site served by Caddy, a web app, a writer
app appending to the data volume through a CGI) is rendered by the real
renderer from a generated config repository and deployed by the real
`SwapEngine` on the `local` provider (compose projects, loop-device volume,
edge Caddy). Each run pushes a new version of it while a request loop goes
through the edge with each app's Host header, a fresh connection per
request, every response recorded with its time. Beside it, in the same
run, the same rendered compose project runs as a plain compose project (its
data in a plain directory) and gets what compose GitOps tools do: the new
files checked out over the old ones (renamed over them, as git does), then
`docker compose up -d --force-recreate`, with the same loop hitting its
Caddy's published port.

Per side it prints medians over the runs: downtime (first failed request to
the first 200 after the last failure; on the swap side that 200 comes from
the new instance), connection errors, other non-200 answers, push-to-live
(call to the first 200 of the new version), acknowledged writes missing
afterwards, and for the swap the engine's steps from its journal. Not a
test: nothing is asserted about time; the goals of issue 4 are printed
beside the figures. Everything created is removed on exit, Ctrl-C included.

`--swaps N` (default 100) measures the edge instead: N swaps in a row, each
a real `SwapEngine` deploy of a new version, under one request loop that
opens a fresh connection per request and keeps idle keep-alive connections
(each idle 50-500 ms between requests, never retried). It runs twice in one
invocation, on the same instance config: first with a baseline edge that
repoints Caddy itself through `/load` at every switch (the edge before the
switchboard), then with the product's edge. Per edge it prints connection
errors per kind of connection and the count of each HTTP status.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import schemas  # noqa: E402
from deploy.providers.base import Route  # noqa: E402
from deploy.providers.edge.proxy import Edge  # noqa: E402
from deploy.providers.local.compose import PROJECT_LABEL, default_compose  # noqa: E402
from deploy.providers.local.provider import LocalProvider  # noqa: E402
from deploy.providers.local.volumes import loop_devices_of, mountpoints_of  # noqa: E402
from deploy.spec import DeploySpec  # noqa: E402
from deploy.swap.engine import SwapEngine  # noqa: E402
from deploy.swap.journal import SwapStep  # noqa: E402
from deploy.swap.sqljournal import SqlJournal  # noqa: E402
from renderers import ArtifactSet, RenderOptions, render_instance  # noqa: E402

GOAL_PUSH_TO_LIVE = 20.0  # seconds, issue 4
INSTANCE = "shop"
HOSTS = ("site.bench.test", "web.bench.test", "notes.bench.test")
APP_IMAGE = "bench/app:1"  # what the config names; mapped to a local image
CADDY_IMAGE = "caddy:2.8.4"  # renderers.layout.CADDY_IMAGE
STEP_GROUPS = (
    ("create + ready", ("create_new", "wait_ready")),
    (
        "maintenance, detach/attach",
        (
            "maintenance_old",
            "stop_writers_old",
            "detach_old",
            "attach_new",
            "start_writers_new",
        ),
    ),
    ("health check", ("health_check",)),
    ("switch", ("switch_traffic",)),
    ("destroy old", ("destroy_old",)),
)


# -- the one seam for subprocesses -----------------------------------------------
def sh(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a program to completion (output captured); every subprocess of this script."""
    full_env = {**os.environ, **env} if env else None
    proc = subprocess.run(
        [str(a) for a in argv], env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])}... failed: {(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc


def local_images() -> tuple[str, str]:
    """(app image, caddy image), built locally when missing (no registry here)."""
    from deploy.providers.local.images import caddy_image, tools_image

    return tools_image(), caddy_image()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the instance ----------------------------------------------------------------
ADD_CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
echo "$QUERY_STRING" >> /data/notes.txt
echo "ok {version}"
"""

LIST_CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
cat /data/notes.txt 2>/dev/null
"""

# busybox httpd as PID 1 ignores SIGTERM (a stop would wait for the timeout);
# real app images handle it, so the stand-in does too
HTTPD = "trap 'exit 0' TERM; httpd -f -p 8080 -h {root} & wait"


def apps_config() -> dict[str, Any]:
    """The three apps: a static site (Caddy), a web app, a writer app on the data volume."""
    copy = "cp -r /app/. /tmp/www && chmod +x /tmp/www/cgi-bin/* && "
    return {
        "instance": {"https": False},
        "volume": {"size": "64M"},
        "apps": [
            {
                "name": "site",
                "catalog": "static",
                "domains": [HOSTS[0]],
                "settings": {"root": "site"},
            },
            {
                "name": "web",
                "image": APP_IMAGE,
                "port": 8080,
                "command": ["sh", "-c", HTTPD.format(root="/www")],
                "files": {"web/index.html": "/www/index.html"},
                "domains": [HOSTS[1]],
            },
            {
                "name": "notes",
                "image": APP_IMAGE,
                "port": 8080,
                "command": ["sh", "-c", copy + HTTPD.format(root="/tmp/www")],
                "files": {
                    "notes/index.html": "/app/index.html",
                    "notes/cgi-bin/add": "/app/cgi-bin/add",
                    "notes/cgi-bin/list": "/app/cgi-bin/list",
                },
                "data": ["/data"],
                "domains": [HOSTS[2]],
            },
        ],
    }


class ConfigRepo:
    """A generated config repository with one instance; `render(version)` is one push."""

    def __init__(self, root: Path, project: str, images: tuple[str, str]):
        self.root = root
        self.project = project
        root.mkdir(parents=True)
        self.options = RenderOptions(
            mode="resolved",
            secrets=lambda name: None,
            image_map={APP_IMAGE: images[0], CADDY_IMAGE: images[1]},
            volume_at_boot=False,  # as the service's deployer renders for a provider
        )
        projects = {project: {"branches": ["main"], "instances": ["*"]}}
        (root / "swapyard.yaml").write_text(yaml.safe_dump({"projects": projects}))
        self.dir = root / "instances" / INSTANCE
        self.dir.mkdir(parents=True)
        (self.dir / "apps.config").write_text(yaml.safe_dump(apps_config(), sort_keys=False))

    def render(self, version: str) -> tuple[Any, ArtifactSet]:
        """Write the files of `version` (its marker in every answer) and render the instance."""
        files = {
            "site/index.html": f"site {version}\n",
            "web/index.html": f"web {version}\n",
            "notes/index.html": f"notes {version}\n",
            "notes/cgi-bin/add": ADD_CGI.format(version=version),
            "notes/cgi-bin/list": LIST_CGI,
        }
        for rel, text in files.items():
            path = self.dir / "files" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (instance,) = schemas.load_repo(self.root).instances
        return instance, render_instance(instance, self.options)


# -- the request loop ------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One request: when it ended (monotonic), where it went, what came back."""

    t: float
    host: str
    path: str
    status: int | None  # None: a connection error
    body: str
    error: str = ""


class RequestLoop(threading.Thread):
    """GETs the three apps in turn through `port`, a fresh connection per request.

    The writer app's requests are writes (`/cgi-bin/add?<tag>`): an answered
    200 is an acknowledged write, looked for afterwards.
    """

    def __init__(self, port: int, tag: str):
        super().__init__(daemon=True)
        self.port = port
        self.tag = tag
        self.samples: list[Sample] = []
        self.stopping = threading.Event()

    def request(self, host: str, path: str) -> Sample:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            return Sample(time.monotonic(), host, path, resp.status, body)
        except (OSError, http.client.HTTPException) as exc:
            return Sample(time.monotonic(), host, path, None, "", type(exc).__name__)
        finally:
            conn.close()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            for host in HOSTS:
                path = f"/cgi-bin/add?{self.tag}-{n}" if host.startswith("notes.") else "/"
                self.samples.append(self.request(host, path))
            time.sleep(0.005)

    def seen(self, version: str, hosts: Sequence[str] = HOSTS) -> bool:
        """True once every host in `hosts` answered 200 with `version`."""
        done = {s.host for s in self.samples if s.status == 200 and version in s.body}
        return set(hosts) <= done

    def stop(self) -> list[Sample]:
        self.stopping.set()
        self.join()
        return self.samples


@dataclass
class Measure:
    """The figures of one push on one side."""

    downtime: float
    errors: int
    non200: dict[int, int]
    push_to_live: float
    requests: int
    window: float  # seconds the request loop ran
    lost_writes: int
    steps: dict[str, float] = field(default_factory=dict)
    engine_total: float = 0.0


def measure(
    samples: list[Sample], version: str, called: float, stored: set[str], tag: str
) -> Measure:
    """The figures of one push from its samples; `called` is when the push began.

    Downtime: the first failed request (connection error or non-200) to the
    first 200 of `version` after the last failure. Push-to-live: `called`
    to that same 200 (to the first 200 of `version` when nothing failed).
    """
    bad = [s for s in samples if s.status != 200]
    new = [s for s in samples if s.status == 200 and version in s.body]
    after = [s for s in new if not bad or s.t > bad[-1].t]
    live_at = after[0].t if after else float("nan")
    downtime = live_at - bad[0].t if bad else 0.0
    non200: dict[int, int] = {}
    for s in bad:
        if s.status is not None:
            non200[s.status] = non200.get(s.status, 0) + 1
    acked = {
        s.path.split("?", 1)[1]
        for s in samples
        if s.path.startswith("/cgi-bin/add") and s.status == 200
    }
    lost = {a for a in acked if a.startswith(f"{tag}-")} - stored
    errors = sum(1 for s in samples if s.status is None)
    window = samples[-1].t - samples[0].t if samples else 0.0
    live = live_at - called
    return Measure(downtime, errors, non200, live, len(samples), window, len(lost))


def stored_notes(port: int) -> set[str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/cgi-bin/list", headers={"Host": HOSTS[2]})
        return set(conn.getresponse().read().decode().split())
    finally:
        conn.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


# -- the swap side ---------------------------------------------------------------
def step_seconds(steps: list[SwapStep]) -> dict[str, float]:
    """Seconds per step and per group of steps, from the journal's timings."""
    took = {s.step: (s.finished - s.started).total_seconds() for s in steps if s.finished}
    out = {name: sum(took.get(s, 0.0) for s in names) for name, names in STEP_GROUPS}
    out.update(took)
    ends = {s.step: s for s in steps}
    if "switch_traffic" in ends and "destroy_old" in ends:
        switched = ends["switch_traffic"].finished
        assert switched is not None
        out["drain (sleep)"] = (ends["destroy_old"].started - switched).total_seconds()
    return out


class SwapSide:
    """The swap engine on the local provider, with its own state directory and edge."""

    def __init__(self, work: Path, project: str, reloading_edge: bool = False):
        self.project = project
        work.mkdir(parents=True)
        self.port = free_port()
        self.provider: Any = self.open_provider(work / "state")
        if reloading_edge:
            e = self.provider.edge
            self.provider.edge = ReloadingEdge(e.dir.parent, e.listen, e.admin)
        self.journal = SqlJournal(f"sqlite:///{work / 'journal.db'}")
        self.engine = SwapEngine(self.provider, self.journal)  # the service's defaults

    def open_provider(self, state: Path) -> Any:
        return LocalProvider(
            state,
            ex_edge_listen=(f"127.0.0.1:{self.port}",),
            ex_edge_admin=f"127.0.0.1:{free_port()}",
        )

    def deploy(self, instance: Any, artifacts: ArtifactSet, commit: str) -> Any:
        spec = DeploySpec.from_instance(instance, artifacts["ignition.json"], commit)
        result = self.engine.deploy(spec)
        if result.status != "success":
            raise RuntimeError(f"deploy failed: {result.summary}")
        return result

    def push(self, instance: Any, artifacts: ArtifactSet, version: str, tag: str) -> Measure:
        loop = RequestLoop(self.port, tag)
        loop.start()
        try:
            time.sleep(0.5)
            called = time.monotonic()
            outcome = self.deploy(instance, artifacts, secrets.token_hex(20))
            returned = time.monotonic()
            time.sleep(0.3)
        finally:
            samples = loop.stop()
        result = measure(samples, version, called, stored_notes(self.port), tag)
        result.steps = step_seconds(self.journal.steps(outcome.swap_id))
        result.engine_total = returned - called
        return result

    def cleanup(self) -> None:
        """Remove the instances, containers, networks, mounts, loop devices and the edge."""
        p, prefix = self.provider, f"sy-{self.project}-"
        for inst in p.list_instances():
            with contextlib.suppress(Exception):
                p.destroy_instance(inst)
        with contextlib.suppress(Exception):
            remove_compose_leftovers(p.docker, lambda name: name.startswith(prefix))
        for vid in p.volumes.ids():
            if p.volumes.use_loop:
                for dev in loop_devices_of(p.volumes.image(vid)):
                    for point in mountpoints_of(dev):
                        sh(["umount", "-l", str(point)], check=False)
                    sh(["losetup", "-d", dev], check=False)
        for point in p.instances_dir.glob("*/data"):
            p.volumes.release_mountpoint(point)  # lift chattr +i so the directory can go
        p.ex_stop_edge()  # by the pid in its pid file


class LxdSwapSide(SwapSide):
    """The swap engine on the lxd provider: system containers on this machine's LXD daemon.

    Its own LXD project prefix and address space, so nothing it makes meets
    a user's or a test's projects; the base image is built before any timing.
    """

    PREFIX = "swapyard-bench-"
    SUBNETS = "10.215.0.0/16"

    def __init__(self, work: Path, project: str, image: str):
        self.image = image
        super().__init__(work, project)

    def open_provider(self, state: Path) -> Any:
        from deploy.providers.lxd.provider import LxdProvider

        return LxdProvider(
            state,
            ex_lxd_image=self.image,
            ex_lxd_project_prefix=self.PREFIX,
            ex_lxd_subnets=self.SUBNETS,
            ex_edge_listen=(f"127.0.0.1:{self.port}",),
            ex_edge_admin=f"127.0.0.1:{free_port()}",
        )

    def cleanup(self) -> None:
        """Remove the instances, volumes, the LXD project and bridge, and the edge."""
        p = self.provider
        for inst in p.list_instances():
            with contextlib.suppress(Exception):
                p.destroy_instance(inst)
        for vol in p.list_volumes():
            with contextlib.suppress(Exception):
                p.destroy_volume(vol)
        with contextlib.suppress(Exception):
            p.ex_remove_project(self.project)
        p.ex_stop_edge()


def lxd_base_image() -> str:
    """The base image's alias on the local daemon, built first when missing."""
    from deploy.providers.lxd.api import Endpoint, LxdClient
    from deploy.providers.lxd.image import ensure_base_image

    image = ensure_base_image(LxdClient(Endpoint.local()))
    if image.built:
        print(f"built the base image {image.alias}", flush=True)
    return image.alias


def remove_compose_leftovers(client: Any, ours: Callable[[str], bool]) -> None:
    """Containers and networks of our compose projects only (never a prune)."""
    for c in client.containers.list(
        all=True, ignore_removed=True, filters={"label": PROJECT_LABEL}
    ):
        if ours(c.labels.get(PROJECT_LABEL, "")):
            c.remove(force=True)
    for net in client.networks.list(filters={"label": PROJECT_LABEL}):
        if ours(net.attrs.get("Labels", {}).get(PROJECT_LABEL, "")):
            net.remove()


# -- the in-place side -----------------------------------------------------------
class InPlaceSide:
    """The same rendered project as a plain compose project, recreated in place."""

    def __init__(self, work: Path, project: str):
        self.name = f"{project}-inplace"
        self.root = work / "inplace" / "root"
        self.data = work / "inplace" / "data"
        self.data.mkdir(parents=True)
        self.port = free_port()  # fixed: a recreated Caddy must publish the same port
        self.override = work / "inplace" / "override.yaml"
        self.override.write_text(
            f'services:\n  caddy:\n    ports: !override ["127.0.0.1:{self.port}:80"]\n'
        )
        self.started = False

    def compose(self, *args: str) -> None:
        argv = [default_compose(), "-p", self.name, "--project-directory", str(self.root)]
        argv += ["-f", str(self.root / "compose.yaml"), "-f", str(self.override), *args]
        sh(argv, env={"SWAPYARD_ROOT": str(self.root), "SWAPYARD_DATA": str(self.data)})

    def checkout(self, artifacts: ArtifactSet) -> None:
        """Write the rendered files as `git checkout` does: each a new file renamed over the old.

        So a running container keeps the file it bound (a bind follows the
        inode) and sees the new one once recreated, as with a compose GitOps
        tool pulling the repository.
        """
        for rel, data in artifacts.files:
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.new")
            tmp.write_bytes(data)
            os.replace(tmp, target)

    def up(self, artifacts: ArtifactSet, version: str) -> None:
        self.checkout(artifacts)
        self.started = True
        self.compose("up", "-d", "--pull", "never")
        probe = RequestLoop(self.port, "warmup")
        wait_for(lambda: self.answers(probe, version), 60, "the in-place project answering")

    @staticmethod
    def answers(probe: RequestLoop, version: str) -> bool:
        return all(
            version in probe.request(h, "/").body for h in HOSTS if not h.startswith("notes.")
        )

    def push(self, artifacts: ArtifactSet, version: str, tag: str) -> Measure:
        loop = RequestLoop(self.port, tag)
        loop.start()
        try:
            time.sleep(0.5)
            called = time.monotonic()
            self.checkout(artifacts)  # what a compose GitOps tool does: new files, then up
            self.compose("up", "-d", "--force-recreate", "--pull", "never")
            returned = time.monotonic()
            wait_for(lambda: loop.seen(version), 60, f"{version} answering in place")
            time.sleep(0.3)
        finally:
            samples = loop.stop()
        result = measure(samples, version, called, stored_notes(self.port), tag)
        result.engine_total = returned - called
        return result

    def cleanup(self, client: Any) -> None:
        if self.started and (self.root / "compose.yaml").exists():
            with contextlib.suppress(Exception):
                self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")
        with contextlib.suppress(Exception):
            remove_compose_leftovers(client, lambda name: name == self.name)


# -- report ----------------------------------------------------------------------
def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.2f}x"


def report(swaps: list[Measure], inplace: list[Measure], cores: int) -> None:
    n = len(swaps)
    print(
        f"\nmedians of {n} run(s), {cores} cores; swap vs in-place "
        "`docker compose up -d --force-recreate`\n"
    )
    head = f"{'':32} {'swap':>9} {'in-place':>9} {'ratio':>7}   goal (issue 4)"
    print(head)
    print("-" * len(head))

    def row(label: str, key: Callable[[Measure], float], unit: str = "", goal: str = "") -> None:
        a, b = med([key(m) for m in swaps]), med([key(m) for m in inplace])
        fa, fb = (f"{a:.2f} s", f"{b:.2f} s") if unit else (f"{a:g}", f"{b:g}")
        print(f"{label:32} {fa:>9} {fb:>9} {ratio(a, b):>7}   {goal}")

    row("downtime (first fail -> 200)", lambda m: m.downtime, "s", "swap <= in-place")
    row("connection errors", lambda m: m.errors, goal="swap: 0")
    row("non-200 answers", lambda m: sum(m.non200.values()))
    row("push-to-live", lambda m: m.push_to_live, "s", f"swap < {GOAL_PUSH_TO_LIVE:g} s")
    row("command returned after", lambda m: m.engine_total, "s")
    row("acknowledged writes lost", lambda m: m.lost_writes, goal="0")
    rates = [m.requests / m.window for m in swaps + inplace if m.window]
    print(f"(request loop: ~{med(rates):.0f} requests/s, a fresh connection each)")
    print("\nswap steps (journal), median seconds:")
    for name, names in [*STEP_GROUPS, ("drain (sleep)", ())]:
        print(f"  {name:30} {med([m.steps.get(name, 0.0) for m in swaps]):6.2f} s")
        for step in names if len(names) > 1 else ():
            print(f"    {step:28} {med([m.steps.get(step, 0.0) for m in swaps]):6.2f} s")
    codes = sorted({c for m in swaps + inplace for c in m.non200})
    for side, ms in (("swap", swaps), ("in-place", inplace)):
        per_run = "; ".join(
            ", ".join(
                [f"{m.downtime:.2f} s", f"{m.errors} errors"]
                + [f"{m.non200[c]}x{c}" for c in codes if m.non200.get(c)]
            )
            for m in ms
        )
        print(f"{side:9} per run: {per_run}")
    print("\ngoals:")
    a, b = med([m.downtime for m in swaps]), med([m.downtime for m in inplace])
    errors = max((m.errors for m in swaps), default=0)
    live = max((m.push_to_live for m in swaps), default=float("nan"))
    print(
        f"  downtime no longer than in-place recreate: {'met' if a <= b else 'NOT met'}"
        f" ({a:.2f} s vs {b:.2f} s)"
    )
    print(
        f"  zero connection errors during a swap:      {'met' if errors == 0 else 'NOT met'}"
        f" (max {errors}; in-place median {med([m.errors for m in inplace]):g})"
    )
    print(
        f"  push-to-live under {GOAL_PUSH_TO_LIVE:g} s:                 "
        f"{'met' if live < GOAL_PUSH_TO_LIVE else 'NOT met'} (max {live:.2f} s)"
    )


# -- the lxd provider beside the local one ------------------------------------------
GOAL_LXD_PUSH_TO_LIVE = 30.0  # seconds, issue 11, with the base image built
GOAL_LXD_WINDOW_RATIO = 2.0  # the lxd 503 window at most twice the local provider's


def window_503(m: Measure) -> float:
    """The swap's 503 window: the first failed answer to the first 200 of the new version.

    Failures during a swap are the maintenance page's 503s (connection
    errors are counted apart), so this is `downtime` under the name the
    issue gives it.
    """
    return m.downtime


def provider_report(local: list[Measure], lxd: list[Measure], cores: int) -> None:
    """The lxd provider's figures beside the local provider's, with the goals of issue 11."""
    print(f"\nmedians of {len(lxd)} swap(s) per provider, {cores} cores\n")
    head = f"{'':32} {'local':>9} {'lxd':>9} {'ratio':>7}   goal (issue 11)"
    print(head)
    print("-" * len(head))

    def row(label: str, key: Callable[[Measure], float], unit: str = "", goal: str = "") -> None:
        a, b = med([key(m) for m in local]), med([key(m) for m in lxd])
        fa, fb = (f"{a:.2f} s", f"{b:.2f} s") if unit else (f"{a:g}", f"{b:g}")
        print(f"{label:32} {fa:>9} {fb:>9} {ratio(b, a):>7}   {goal}")

    row("503 window", window_503, "s", f"lxd <= {GOAL_LXD_WINDOW_RATIO:g}x local")
    row("503 answers", lambda m: m.non200.get(503, 0))
    row("connection errors", lambda m: m.errors, goal="0")
    row("other non-200 answers", lambda m: sum(n for c, n in m.non200.items() if c != 503))
    row("push-to-live", lambda m: m.push_to_live, "s", f"lxd < {GOAL_LXD_PUSH_TO_LIVE:g} s")
    row("engine returned after", lambda m: m.engine_total, "s")
    row("acknowledged writes lost", lambda m: m.lost_writes, goal="0")
    print("\nswap steps (journal), median seconds:")
    print(f"  {'':30} {'local':>8} {'lxd':>8}")

    def took(step: str, ms: list[Measure]) -> float:
        return med([m.steps.get(step, 0.0) for m in ms])

    for name, names in [*STEP_GROUPS, ("drain (sleep)", ())]:
        print(f"  {name:30} {took(name, local):6.2f} s {took(name, lxd):6.2f} s")
        for step in names if len(names) > 1 else ():
            print(f"    {step:28} {took(step, local):6.2f} s {took(step, lxd):6.2f} s")
    for side, ms in (("local", local), ("lxd", lxd)):
        per_run = "; ".join(
            f"{window_503(m):.2f} s window, {m.errors} errors, live {m.push_to_live:.2f} s"
            for m in ms
        )
        print(f"{side:6} per run: {per_run}")
    window = (med([window_503(m) for m in lxd]), med([window_503(m) for m in local]))
    errors = max((m.errors for m in local + lxd), default=0)
    live = max((m.push_to_live for m in lxd), default=float("nan"))
    lost = max((m.lost_writes for m in local + lxd), default=0)
    met = window[0] <= GOAL_LXD_WINDOW_RATIO * window[1]
    median_live = med([m.push_to_live for m in lxd])
    goals = [
        ("zero connection errors", errors == 0, f"max {errors} over both providers"),
        (
            f"503 window at most {GOAL_LXD_WINDOW_RATIO:g}x local's",
            met,
            f"{window[0]:.2f} s vs {window[1]:.2f} s, {ratio(*window)}",
        ),
        (
            f"push-to-live under {GOAL_LXD_PUSH_TO_LIVE:g} s (base image built)",
            live < GOAL_LXD_PUSH_TO_LIVE,
            f"max {live:.2f} s, median {median_live:.2f} s",
        ),
        ("no acknowledged write lost", lost == 0, f"max {lost}"),
    ]
    print("\ngoals:")
    for label, ok, detail in goals:
        print(f"  {label + ':':46} {'met' if ok else 'NOT met'} ({detail})")


def main_lxd(runs: int) -> int:
    """`--provider lxd`: the same swaps on the local provider and on lxd, in one invocation."""
    images = local_images()  # before any timing: "images present"
    image = lxd_base_image()  # and the base image built
    project = "bench" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="swapyard-bench-"))
    sides: list[SwapSide] = []
    measures: dict[str, list[Measure]] = {"local": [], "lxd": []}
    try:
        with interrupts_as_exceptions():
            repo = ConfigRepo(work / "repo", project, images)
            sides.append(SwapSide(work / "local", project))
            sides.append(LxdSwapSide(work / "lxd", project, image))
            instance, artifacts = repo.render("v1")
            for name, side in zip(measures, sides, strict=True):
                started = time.monotonic()
                side.deploy(instance, artifacts, "0" * 40)
                print(f"{name}: first deploy (create) {time.monotonic() - started:.2f} s")
            for run in range(1, runs + 1):
                version = f"v{run + 1}"
                instance, artifacts = repo.render(version)
                line = []
                for name, side in zip(measures, sides, strict=True):
                    m = side.push(instance, artifacts, version, f"{name}{run}")
                    measures[name].append(m)
                    line.append(
                        f"{name} 503 window {window_503(m):.2f} s, {m.errors} errors, "
                        f"live after {m.push_to_live:.2f} s"
                    )
                print(f"run {run}: " + " | ".join(line), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for side in sides:
            side.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    local, lxd = measures["local"], measures["lxd"]
    if lxd and len(local) == len(lxd):
        provider_report(local, lxd, os.cpu_count() or 0)
        return 0
    return 1


# -- many swaps in a row: the edge -----------------------------------------------
class ReloadingEdge(Edge):
    """The baseline: the edge before the switchboard, repointing Caddy with `/load` per switch.

    Its config dials each instance's endpoint (with Caddy's default upstream
    keep-alive) and every switch posts the whole config, as the edge did
    up to 956247d.
    """

    def config(self, routes: list[Route]) -> dict[str, Any]:
        config = super().config(routes)
        server = config["apps"]["http"]["servers"]
        (name,) = server
        server[name]["routes"] = [
            {
                "match": [{"host": list(dict.fromkeys(r.domains))}],
                "handle": [
                    {
                        "handler": "reverse_proxy",
                        "upstreams": [{"dial": f"{r.endpoint[0]}:{r.endpoint[1]}"}],
                    }
                ],
                "terminal": True,
            }
            for r in routes
        ] + server[name]["routes"][-1:]  # the 404 for unknown hosts
        return config

    def load(self, routes: list[Route]) -> None:
        self.ensure_running()
        self._save(routes)
        resp = requests.post(f"http://{self.admin}/load", json=self.config(routes), timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"the baseline edge refused its config: {resp.text}")


class EdgeLoop:
    """Fresh-connection and idle keep-alive clients through one edge, answers counted.

    Fresh: one thread, a new connection per request, the three hosts in turn
    (the notes app's requests are writes). Keep-alive: `idle` threads, each
    holding one connection, idle 50-500 ms between requests; a request that
    fails on it is counted, never retried, and a new connection is opened.
    """

    def __init__(self, port: int, tag: str, idle: int = 6):
        self.port, self.tag = port, tag
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.answers: dict[str, Counter[str]] = {"fresh": Counter(), "keep-alive": Counter()}
        self.acked: set[str] = set()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.fresh, daemon=True)]
        self.threads += [
            threading.Thread(target=self.keepalive, args=(random.Random(i),), daemon=True)
            for i in range(idle)
        ]

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def ask(self, kind: str, conn: http.client.HTTPConnection, host: str, path: str) -> bool:
        """One GET on `conn`; counts the answer under `kind`; False on a connection error."""
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            status = str(resp.status)
        except (OSError, http.client.HTTPException) as exc:
            with self.lock:
                self.answers[kind][f"error {type(exc).__name__}"] += 1
                self.errors.append(f"{time.strftime('%H:%M:%S')} {kind} {type(exc).__name__}")
            return False
        with self.lock:
            self.answers[kind][status] += 1
            if status == "200" and "?" in path:
                self.acked.add(path.split("?", 1)[1])
        return True

    def fresh(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            for host in HOSTS:
                path = f"/cgi-bin/add?{self.tag}-{n}" if host.startswith("notes.") else "/"
                conn = self.connection()
                self.ask("fresh", conn, host, path)
                conn.close()
            time.sleep(0.005)

    def keepalive(self, rng: random.Random) -> None:
        conn = self.connection()
        while not self.stopping.wait(rng.uniform(0.05, 0.5)):
            if not self.ask("keep-alive", conn, rng.choice(HOSTS[:2]), "/"):
                conn.close()
                conn = self.connection()
        conn.close()

    def __enter__(self) -> EdgeLoop:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)


@dataclass
class EdgeRun:
    """What one edge saw through `swaps` swaps in a row."""

    edge: str
    swaps: int
    seconds: float
    answers: dict[str, Counter[str]]
    lost_writes: int
    errors: list[str]

    def connection_errors(self, kind: str) -> int:
        return sum(n for what, n in self.answers[kind].items() if what.startswith("error"))


def swap_in_a_row(
    work: Path, project: str, images: tuple[str, str], swaps: int, reloading: bool
) -> EdgeRun:
    """First-deploy the instance behind one edge, then `swaps` swaps under an `EdgeLoop`."""
    name = "reload per switch" if reloading else "switchboard"
    repo = ConfigRepo(work / "repo", project, images)
    side = SwapSide(work / "swap", project, reloading_edge=reloading)
    try:
        instance, artifacts = repo.render("v1")
        side.deploy(instance, artifacts, "0" * 40)
        tag = "r" if reloading else "s"
        with EdgeLoop(side.port, tag) as loop:
            time.sleep(0.5)
            started = time.monotonic()
            for n in range(1, swaps + 1):
                instance, artifacts = repo.render(f"v{n + 1}")
                side.deploy(instance, artifacts, secrets.token_hex(20))
                if n % 10 == 0 or n == swaps:
                    fresh, kept = loop.answers["fresh"], loop.answers["keep-alive"]
                    print(
                        f"  {name}: {n}/{swaps} swaps, {time.monotonic() - started:.0f} s, "
                        f"{sum(fresh.values())} fresh / {sum(kept.values())} keep-alive "
                        f"requests, {len(loop.errors)} connection errors",
                        flush=True,
                    )
            seconds = time.monotonic() - started
            time.sleep(0.3)
        stored = stored_notes(side.port)
        return EdgeRun(
            name,
            swaps,
            seconds,
            loop.answers,
            len(loop.acked - stored),
            loop.errors,
        )
    finally:
        side.cleanup()


def edge_report(runs: list[EdgeRun], cores: int) -> None:
    print(f"\n{runs[0].swaps} swaps in a row per edge, {cores} cores\n")
    codes = sorted({c for r in runs for k in r.answers.values() for c in k if c.isdigit()})
    head = f"{'':40}" + "".join(f"{r.edge:>20}" for r in runs)
    print(head)
    print("-" * len(head))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:40}" + "".join(f"{v:>20}" for v in values))

    row("seconds for the swaps", [f"{r.seconds:.0f}" for r in runs])
    for kind in ("fresh", "keep-alive"):
        row(f"{kind}: requests", [str(sum(r.answers[kind].values())) for r in runs])
        row(f"{kind}: connection errors", [str(r.connection_errors(kind)) for r in runs])
        for code in codes:
            row(f"{kind}: HTTP {code}", [str(r.answers[kind][code]) for r in runs])
    row("acknowledged writes lost", [str(r.lost_writes) for r in runs])
    kinds = sorted({w for r in runs for k in r.answers.values() for w in k if not w.isdigit()})
    for what in kinds:
        row(f"  of which {what}", [str(sum(k[what] for k in r.answers.values())) for r in runs])
    last = runs[-1]
    total = last.connection_errors("fresh") + last.connection_errors("keep-alive")
    print(
        f"\ngoal (issue 5): zero connection errors across {last.swaps} swaps, fresh and "
        f"idle keep-alive: {'met' if total == 0 else 'NOT met'} ({total} on {last.edge})"
    )


def main_swaps(swaps: int, baseline: bool) -> int:
    """The `--swaps` mode: the baseline edge, then the product's, in one invocation."""
    images = local_images()
    runs: list[EdgeRun] = []
    work = Path(tempfile.mkdtemp(prefix="swapyard-bench-"))
    try:
        with interrupts_as_exceptions():
            for reloading in (True, False) if baseline else (False,):
                project = "bench" + secrets.token_hex(3)
                sub = work / ("reload" if reloading else "board")
                print(f"{'baseline edge' if reloading else 'switchboard edge'}:", flush=True)
                runs.append(swap_in_a_row(sub, project, images, swaps, reloading))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if runs:
        edge_report(runs, os.cpu_count() or 0)
    return 0 if len(runs) == (2 if baseline else 1) else 1


# -- main ------------------------------------------------------------------------
@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so cleanup runs for both."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="pushes per side (default 3)")
    parser.add_argument(
        "--swaps",
        type=int,
        nargs="?",
        const=100,
        help="instead: this many swaps in a row (default 100) per edge, fresh and keep-alive",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="with --swaps: skip the baseline edge that reloads Caddy per switch",
    )
    parser.add_argument(
        "--provider",
        choices=("local", "lxd"),
        default="local",
        help="lxd: the swap on the lxd provider beside the local provider's, in one run",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: loop devices and mounts")
    if args.provider == "lxd":
        if args.swaps is not None:
            sys.exit("--swaps measures the edge, the same for both providers: without --provider")
        return main_lxd(args.runs)
    if args.swaps is not None:
        if args.swaps < 1:
            sys.exit("--swaps needs a positive number")
        return main_swaps(args.swaps, baseline=not args.no_baseline)
    images = local_images()  # before any timing: "images present"
    import docker

    client = docker.from_env()
    project = "bench" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="swapyard-bench-"))
    swap: SwapSide | None = None
    inplace: InPlaceSide | None = None
    swaps: list[Measure] = []
    inplaces: list[Measure] = []
    try:
        with interrupts_as_exceptions():
            repo = ConfigRepo(work / "repo", project, images)
            swap = SwapSide(work / "swap", project)
            inplace = InPlaceSide(work, project)
            instance, artifacts = repo.render("v1")
            started = time.monotonic()
            swap.deploy(instance, artifacts, "0" * 40)
            print(f"first deploy (create): {time.monotonic() - started:.2f} s", flush=True)
            started = time.monotonic()
            inplace.up(artifacts, "v1")
            print(f"in-place project up:   {time.monotonic() - started:.2f} s", flush=True)
            for run in range(1, args.runs + 1):
                version = f"v{run + 1}"
                instance, artifacts = repo.render(version)
                s = swap.push(instance, artifacts, version, f"s{run}")
                i = inplace.push(artifacts, version, f"i{run}")
                swaps.append(s)
                inplaces.append(i)
                print(
                    f"run {run}: swap downtime {s.downtime:.2f} s, {s.errors} errors, "
                    f"live after {s.push_to_live:.2f} s | in-place downtime "
                    f"{i.downtime:.2f} s, {i.errors} errors, live after {i.push_to_live:.2f} s",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if swap is not None:
            swap.cleanup()
        if inplace is not None:
            inplace.cleanup(client)
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if swaps and len(swaps) == len(inplaces):
        report(swaps, inplaces, os.cpu_count() or 0)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
