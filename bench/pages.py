"""Benchmark: the instances overview (`/`) with 200 instances and 20,000 deployments.

A fresh SQLite database, filled through the service's own models (events,
deployments, their journaled steps), behind the app `create_app` builds; the
overview is fetched through Flask's test client, logged in, `--rounds` times;
median and p95 are printed. Baseline in the same script: `/api/instances`,
the JSON listing of the same instances, and the ratio page/API. For scale, the
query the overview used before (every deploy row loaded, the last per key kept
in Python) is timed on the same data. Not a test: it prints figures and
asserts nothing. Goal: the overview under 100 ms.

    .venv/bin/python bench/pages.py [--instances 200] [--deployments 20000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from handlers.gitops.pipeline import DeploymentStatus, StepStatus
from service.store.db import get_db
from service.store.models import Deployment, Event, Step
from service.web.app import create_app

TOKEN = "bench-token"
STEPS = ("render", "wait_lock", "create_new", "maintenance_old", "switch_traffic", "destroy_old")


def fill(app: object, instances: int, deployments: int) -> None:
    """`deployments` deployments spread over `instances` instances, one push per round."""
    pushes = -(-deployments // instances)
    t0 = 1_700_000_000.0
    made = 0
    with get_db(app).session() as db:  # type: ignore[arg-type]
        for p in range(pushes):
            sha = f"{p:040x}"
            event = Event(
                forge="github",
                event_name="push",
                kind="push",
                delivery_id=f"d{p}",
                received_at=t0 + p * 600,
                status="dispatched",
                repository="owner/config",
                ref="refs/heads/main",
                before=f"{p - 1:040x}" if p else "0" * 40,
                after=sha,
                attempts=1,
            )
            db.add(event)
            db.flush()
            for i in range(instances):
                if made == deployments:
                    break
                made += 1
                start = t0 + p * 600 + i
                failed = (p + i) % 7 == 0
                dep = Deployment(
                    event_id=event.id,
                    key=f"production/app{i:03d}",
                    project="production",
                    instance=f"app{i:03d}",
                    context=f"swapyard/production/app{i:03d}",
                    mode="deploy",
                    sha=sha,
                    status=DeploymentStatus.FAILURE if failed else DeploymentStatus.SUCCESS,
                    action="replace",
                    summary="failure: health check" if failed else "replaced",
                    log="",
                    created_at=start,
                    started_at=start,
                    finished_at=start + 12.5,
                )
                db.add(dep)
                db.flush()
                db.add_all(
                    Step(
                        deployment_id=dep.id,
                        name=name,
                        status=StepStatus.DONE,
                        started_at=start + k * 2,
                        finished_at=start + k * 2 + 1.5,
                        log="",
                    )
                    for k, name in enumerate(STEPS)
                )


def old_latest_per_instance(db: object) -> int:
    """What the overview did before: load every deploy row, keep the last per key."""
    rows = db.scalars(  # type: ignore[attr-defined]
        select(Deployment).where(Deployment.mode == "deploy").order_by(Deployment.id)
    ).all()
    latest: dict[str, Deployment] = {}
    for d in rows:
        latest[d.key] = d
    return len(latest)


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()  # warm: templates compiled, caches filled
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def figures(name: str, ms: list[float]) -> float:
    ms = sorted(ms)
    median = statistics.median(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"{name:<44} median {median:8.2f} ms   p95 {p95:8.2f} ms   ({len(ms)} rounds)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--deployments", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "data_dir": str(Path(tmp) / "data"),
                "api_token": TOKEN,
                "webhook_secret": "bench",
                "public_url": "http://127.0.0.1:9",
                "deploy": False,
                "workers": 1,
            }
        )
        t = time.perf_counter()
        fill(app, args.instances, args.deployments)
        print(
            f"filled {args.instances} instances, {args.deployments} deployments, "
            f"{args.deployments * len(STEPS)} steps in {time.perf_counter() - t:.1f} s"
        )
        client = app.test_client()
        client.post("/login", data={"token": TOKEN})

        def page() -> None:
            r = client.get("/")
            assert r.status_code == 200 and b"production/app199" in r.data

        def api() -> None:
            r = client.get("/api/instances", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200

        def old_query() -> None:
            with get_db(app).session() as db:
                old_latest_per_instance(db)

        overview = figures("overview page  GET /", timed(page, args.rounds))
        baseline = figures("baseline  GET /api/instances (JSON)", timed(api, args.rounds))
        before = figures("for scale: the former query alone", timed(old_query, args.rounds))
        print(f"ratio overview / API listing: {overview / baseline:.2f}")
        print(f"ratio former query / overview: {before / overview:.2f}")
        print(f"goal: overview under 100 ms: {'met' if overview < 100 else 'NOT met'}")
        get_db(app).dispose()


if __name__ == "__main__":
    main()
