"""DNS benchmark: how long the `rfc2136` driver takes to move a name, beside `nsupdate`.

    .venv/bin/python bench/dns.py [--rounds 20] [--servers bind,pdns]

For BIND 9 and PowerDNS (real servers on loopback, started with the test
servers' plain helpers), each round times from "start" until the server
itself answers the new address (polled with direct UDP queries):

- swapyard: the swap's DNS step as it runs it: open the zone, plan the
  records (`deploy.dns.records.plan_records`: one `read` of the name and its
  ownership mark), one `apply` of the replacement (addresses and mark, one
  UPDATE);
- baseline: a plain `nsupdate -y alg:name:secret` process sending the same
  change (delete the A set, add the new address).

The two alternate round by round, on names of their own, after one warm-up
round each. Prints median and p95 of each and the ratio swapyard/nsupdate per
server; the goal is at most 1.5. Not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file is named dns.py: its folder, first on the path when run as a script, would
# shadow dnspython's `dns` package. The repository root takes its place.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from deploy.dns.records import plan_records  # noqa: E402 (the path is set just above)
from deploy.dns.registry import open_zone  # noqa: E402
from tests.deploy.dns.servers import DnsTestServer, running  # noqa: E402

GOAL = 1.5
MARK = "heritage=swapyard,swapyard/owner=bench,swapyard/instance=bench/dns"
POLL_LIMIT = 10.0


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def until_answered(server: DnsTestServer, name: str, address: str, start: float) -> float:
    """Milliseconds from `start` until `server` answers `address` for `name`."""
    while server.query(name, "A") != [address]:
        if time.perf_counter() - start > POLL_LIMIT:
            raise SystemExit(f"{server.kind}: {name} never answered {address}")
    return (time.perf_counter() - start) * 1000


def swapyard_round(server: DnsTestServer, name: str, address: str) -> float:
    """The DNS step as a swap runs it: open, read, apply; then wait for the answer."""
    start = time.perf_counter()
    driver = open_zone(server.access())
    change = plan_records(driver, MARK, {name: (address,)}, 60)
    driver.apply(change.changes)
    driver.close()
    return until_answered(server, name, address, start)


def nsupdate_round(server: DnsTestServer, name: str, address: str) -> float:
    """The baseline: one nsupdate process sending delete + add; then wait for the answer."""
    nsupdate = shutil.which("nsupdate")
    assert nsupdate is not None
    script = (
        f"server {server.host} {server.port}\nzone {server.zone}.\n"
        f"update delete {name}. A\nupdate add {name}. 60 A {address}\nsend\n"
    )
    key = f"{server.key_algorithm}:{server.key_name}:{server.key_secret}"
    start = time.perf_counter()
    done = subprocess.run(
        [nsupdate, "-t", "5", "-y", key], input=script, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise SystemExit(f"{server.kind}: nsupdate failed: {done.stderr.strip()}")
    return until_answered(server, name, address, start)


def bench(kind: str, rounds: int) -> tuple[list[float], list[float]]:
    """Timings in ms (swapyard, nsupdate) of `rounds` rounds against a fresh `kind` server."""
    ours: list[float] = []
    theirs: list[float] = []
    with running(kind) as server:
        runs: list[tuple[Callable[[DnsTestServer, str, str], float], str, list[float]]] = [
            (swapyard_round, f"bench-swapyard.{server.zone}", ours),
            (nsupdate_round, f"bench-nsupdate.{server.zone}", theirs),
        ]
        for round_ in range(rounds + 1):
            address = f"198.51.100.{round_ % 250 + 1}"
            for run, name, times in runs:
                elapsed = run(server, name, address)
                if round_ > 0:  # the first round warms both up
                    times.append(elapsed)
    return ours, theirs


def main() -> None:
    """Run the rounds per server and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--servers", default="bind,pdns")
    args = parser.parse_args()
    for program in ("named", "pdns_server", "pdnsutil", "nsupdate"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is not installed (scripts/setup --test installs it)")
    print(f"start to the authoritative answer, {args.rounds} rounds each, ms")
    print(f"{'server':8} {'what':10} {'median':>8} {'p95':>8}")
    for kind in args.servers.split(","):
        ours, theirs = bench(kind, args.rounds)
        for label, times in (("swapyard", ours), ("nsupdate", theirs)):
            print(f"{kind:8} {label:10} {statistics.median(times):8.2f} {p95(times):8.2f}")
        ratio = statistics.median(ours) / statistics.median(theirs)
        verdict = "within" if ratio <= GOAL else "OVER"
        print(
            f"{kind:8} {'ratio':10} {ratio:8.2f} {p95(ours) / p95(theirs):8.2f}   "
            f"swapyard/nsupdate, {verdict} the {GOAL}x goal"
        )


if __name__ == "__main__":
    main()
