"""The instance and deployment pages with real swaps' journals, in Chromium and over HTTP.

The service runs for real (loopback HTTP, its plan-only worker, its SQLite
database); the deployments shown are recorded through the service's store
with the steps of real `SwapEngine` runs on the memory provider: a replace, a
swap whose health check failed and was rolled back, and a worker killed inside
`detach_volume` whose swap the restarted engine recovered. The pages must draw
each journal as it is: one bar per step with its duration, the failed step in
words, the 503 band from `maintenance_old` to `switch_traffic` (or to the
rollback's `maintenance_off`), the restart. A screenshot of each page is
written to out/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from deploy.backup.journal import BackupJournal, RunState
from deploy.backup.schedule import BackupScheduler
from deploy.providers.memory.provider import MemoryProvider
from deploy.swap.sqljournal import SqlJournal
from handlers.gitops.pipeline import DeploymentStatus, HistoryStep, StepStatus
from service.store.db import get_db
from service.store.models import RECOVERED_STEP, Deployment, Event, Step
from service.web import freshness
from service.web.api import count_instances, latest_per_instance
from service.web.pages import DEPLOYMENTS_PER_PAGE, INSTANCES_PER_PAGE
from service.worker.backups import KEY as BACKUPS_KEY
from service.worker.backups import Backups
from tests.deploy.backup.test_schedule import instance as backup_instance
from tests.deploy.swap.test_engine_memory import Crash, Harness, first, h  # noqa: F401
from tests.service.conftest import TOKEN, ZERO, Served
from tests.service.web import a11y
from tests.service.web.test_pages_browser import page  # noqa: F401
from tests.service.web.test_timeline import history
from tests.service.worker.test_worker import finished

KEY = ("production", "blog")


def record(served: Served, steps: list[HistoryStep], status: str, summary: str) -> int:
    """Store a deployment of production/blog with `steps`, as the worker does; its id."""
    with get_db(served.app).session() as db:
        n = db.query(Event).count()
        event = Event(
            forge="github",
            event_name="push",
            kind="push",
            delivery_id=f"recorded-{n}",
            received_at=steps[0].started_at if steps else time.time(),
            status="dispatched",
            repository="owner/config",
            ref="refs/heads/main",
            before=ZERO,
            after=f"{n:040x}",
            attempts=1,
        )
        db.add(event)
        db.flush()
        dep = Deployment(
            event_id=event.id,
            key="/".join(KEY),
            project=KEY[0],
            instance=KEY[1],
            context="swapyard/production/blog",
            mode="deploy",
            sha=f"{n:040x}",
            status=status,
            action="replace",
            summary=summary,
            log=summary,
            created_at=steps[0].started_at if steps else time.time(),
            started_at=steps[0].started_at if steps else time.time(),
            finished_at=steps[-1].finished_at if steps else time.time(),
        )
        db.add(dep)
        db.flush()
        db.add_all(Step.of(dep.id, s) for s in steps)
        return dep.id


def log_in(page: Page, served: Served) -> None:  # noqa: F811
    page.goto(f"{served.url}/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Instances")


def shot(page: Page, name: str) -> None:  # noqa: F811
    """The accessibility pass on the page (tests/service/web/a11y.py), then its screenshot."""
    a11y.check(page)
    a11y.screenshot(page, name)


def check_timeline(page: Page, steps: list[HistoryStep]) -> None:  # noqa: F811
    """The page's bars are the journal's steps, in order, with their durations."""
    bars = page.locator("#timeline g.bar")
    expect(bars).to_have_count(len(steps))
    names = bars.evaluate_all("gs => gs.map(g => g.getAttribute('data-step'))")
    assert names == [s.name for s in steps]
    drawn = bars.evaluate_all("gs => gs.map(g => Number(g.getAttribute('data-seconds')))")
    assert drawn == pytest.approx([s.finished_at - s.started_at for s in steps], abs=1e-5)
    rows = page.locator("#steps tbody tr")
    expect(rows).to_have_count(len(steps))  # the table stays as the text alternative


def band(page: Page) -> tuple[float, float]:  # noqa: F811
    g = page.locator("#timeline g.window")
    expect(g).to_have_count(1)
    return float(g.get_attribute("data-start") or "nan"), float(
        g.get_attribute("data-end") or "nan"
    )


def test_the_pages_draw_a_replace_a_failed_swap_and_a_recovery_from_their_journals(
    serve,
    config_repo,
    h: Harness,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    served = serve(config_repo)
    finished(served, served.push(ZERO, config_repo.sha()).json()["event"])

    first(h)
    out = h.deploy("v2", "b" * 40)
    replaced = history(h, out.swap_id)  # type: ignore[arg-type]
    ok = record(served, replaced, DeploymentStatus.SUCCESS, out.summary)

    h.provider.ex_set_status("web", 500)
    out = h.deploy("v3", "c" * 40)
    assert out.status == "failure", out.summary
    rolled_back = history(h, out.swap_id)  # type: ignore[arg-type]
    failed = record(served, rolled_back, DeploymentStatus.FAILURE, out.summary)

    h.provider.ex_set_status("web", 200)
    h.provider.ex_fail("detach_volume", Crash("killed in detach_volume"))
    with pytest.raises(Crash):
        h.deploy("v4", "d" * 40)
    (out,) = h.restart().recover()
    now = time.time()
    recovered_steps = [
        *history(h, out.swap_id),  # type: ignore[arg-type]
        HistoryStep(RECOVERED_STEP, StepStatus.DONE, now, now, out.summary),
    ]
    recovered = record(served, recovered_steps, DeploymentStatus.FAILURE, out.summary)

    log_in(page, served)
    page.goto(f"{served.url}/instances/production/blog")
    bars = page.locator("#swap-windows g.bar")
    expect(bars).to_have_count(3)  # each of the three swaps had the page on
    expect(page.locator("#swap-windows")).to_have_attribute("role", "img")
    row = page.locator("#deployments tr", has_text=f"{failed}")
    expect(row.locator("td").nth(6)).to_have_text(re.compile(r"^\d+\.\d s$"))
    shot(page, "instance")

    page.goto(f"{served.url}/deployments/{ok}")
    check_timeline(page, replaced)
    origin = replaced[0].started_at
    on = next(s for s in replaced if s.name == "maintenance_old")
    switched = next(s for s in replaced if s.name == "switch_traffic")
    assert band(page) == pytest.approx(
        (on.started_at - origin, switched.finished_at - origin), abs=1e-5
    )
    expect(page.locator("#window")).to_contain_text("Maintenance page (503) on for")
    expect(page.locator("#timeline g.bar.failed")).to_have_count(0)
    shot(page, "deployment-replace")

    page.goto(f"{served.url}/deployments/{failed}")
    check_timeline(page, rolled_back)
    marked = page.locator("#timeline g.bar.failed")
    expect(marked).to_have_count(1)
    expect(marked).to_have_attribute("data-step", "health_check")
    expect(marked.locator("text")).to_have_text("health_check — failed")
    expect(page.locator(".failed-step")).to_contain_text("Failed: health_check")
    expect(page.locator(".failed-step")).to_contain_text("HTTP 500")
    off = next(s for s in rolled_back if s.name == "rollback:maintenance_off_old")
    assert band(page)[1] == pytest.approx(off.finished_at - rolled_back[0].started_at, abs=1e-5)
    shot(page, "deployment-failed")

    page.goto(f"{served.url}/deployments/{recovered}")
    check_timeline(page, recovered_steps)
    expect(page.locator("#timeline g.restart")).to_have_count(1)
    expect(page.locator("#timeline g.restart text")).to_have_text("worker restarted")
    expect(page.locator("#restarts")).to_contain_text("The worker restarted")
    expect(page.locator("#timeline g.bar[data-status=started]")).to_have_attribute(
        "data-step", "detach_old"
    )
    shot(page, "deployment-recovered")


def test_the_instance_page_pages_through_a_long_history(serve, config_repo) -> None:
    served = serve(config_repo)
    finished(served, served.push(ZERO, config_repo.sha()).json()["event"])
    t = time.time()
    ids = [
        record(
            served,
            [HistoryStep("render", StepStatus.DONE, t + i, t + i + 0.5)],
            DeploymentStatus.SUCCESS,
            f"deployment number {i}",
        )
        for i in range(2 * DEPLOYMENTS_PER_PAGE + 10)
    ]
    session = requests.Session()
    session.post(f"{served.url}/login", data={"token": TOKEN}, timeout=10)

    def shown(url: str) -> tuple[list[int], str]:
        r = session.get(url, timeout=10)
        assert r.status_code == 200
        return [int(n) for n in re.findall(r'<a href="/deployments/(\d+)">', r.text)], r.text

    base = f"{served.url}/instances/production/blog"
    newest, text = shown(base)
    every = sorted(_all_ids(served), reverse=True)
    assert set(ids) <= set(every)
    assert newest == every[:DEPLOYMENTS_PER_PAGE]
    assert "Newer deployments" not in text
    older = re.search(r'href="(\?before=\d+)"', text)
    assert older is not None
    second, text = shown(base + older.group(1))
    assert second == every[DEPLOYMENTS_PER_PAGE : 2 * DEPLOYMENTS_PER_PAGE]
    newer = re.search(r'href="(\?after=\d+)"', text)
    assert newer is not None
    back, _ = shown(base + newer.group(1))
    assert back == newest
    last = re.search(r'href="(\?before=\d+)"', text)
    assert last is not None
    rest, text = shown(base + last.group(1))
    assert rest == every[2 * DEPLOYMENTS_PER_PAGE :]
    assert "Older deployments" not in text and "Newer deployments" in text


def _all_ids(served: Served) -> list[int]:
    """Every deployment of production/blog: the real push's and the recorded ones."""
    with get_db(served.app).session() as db:
        return [d.id for d in db.query(Deployment).filter(Deployment.key == "production/blog")]


def test_freshness_from_the_backup_journal(tmp_path: Path) -> None:
    journal = BackupJournal(f"sqlite:///{tmp_path / 'backups.db'}")
    good = journal.begin("production", "blog", "backup")
    journal.finish(good, RunState.SUCCEEDED)
    bad = journal.begin("production", "blog", "backup")
    journal.finish(bad, RunState.FAILED, error="restic: boom")
    journal.finish(journal.begin("production", "www", "backup"), RunState.FAILED)
    last = freshness.last_good_backups(journal.engine)
    assert set(last) == {"production/blog"}  # a failed backup is no backup
    finished_at = journal.get(good).finished
    assert finished_at is not None
    assert last["production/blog"] == finished_at.replace(tzinfo=dt.UTC)

    daily = "0 3 * * *"
    when = last["production/blog"]
    allowed = dt.timedelta(days=1, hours=1)  # a day between runs, no jitter, an hour's grace

    def judged(age: dt.timedelta, since: dt.datetime | None = None) -> freshness.Freshness:
        return freshness.judge(when, daily, "UTC", 0, since, when + age)

    assert judged(dt.timedelta(hours=20)).state == "fresh"
    assert judged(allowed + dt.timedelta(minutes=1)).state == "late"
    assert judged(2 * allowed + dt.timedelta(minutes=1)).state == "missing"
    never = freshness.judge(None, daily, "UTC", 0, when - dt.timedelta(hours=2), when)
    assert (never.state, never.words, never.shape) == ("due", "not due yet", "○")
    never = freshness.judge(None, daily, "UTC", 0, when - dt.timedelta(days=3), when)
    assert (never.state, never.words, never.shape) == ("missing", "missing", "✕")
    assert judged(dt.timedelta(hours=1)).allowed == allowed


def test_freshness_and_backup_charts_with_the_schedule_running(
    serve,
    config_repo,
    tmp_path: Path,
    page: Page,  # noqa: F811
) -> None:
    """Backups on, as `build_worker` wires them with DEPLOY: a scheduler on the service's
    database (memory provider, an unreachable repository: the jobs exist, runs do not),
    its journal holding the runs the pages read."""
    served = serve(config_repo)
    finished(served, served.push(ZERO, config_repo.sha()).json()["event"])
    db = get_db(served.app)
    swaps = SqlJournal(db.engine)
    scheduler = BackupScheduler(
        db.engine, MemoryProvider(tmp_path / "state"), swaps, {"restic": "pw"}.__getitem__
    )
    scheduler.start(paused=True)
    served.app.extensions[BACKUPS_KEY] = Backups(scheduler, db, 10)
    try:
        closed = "rest:http://127.0.0.1:9/"  # nothing listens: jobs are made, runs fail
        for name in ("blog", "www"):
            scheduler.schedule_instance(backup_instance("production", name, closed))
        backups_journal = scheduler.history
        for window, size in ((1.5, 10 << 20), (2.5, 12 << 20), (0.8, 13 << 20)):
            run = backups_journal.begin("production", "blog", "backup", "stop")
            backups_journal.finish(run, RunState.SUCCEEDED, window=window, bytes=size)
        drill = backups_journal.begin("production", "blog", "drill")
        backups_journal.finish(drill, RunState.FAILED, error="restore: checksum mismatch")

        log_in(page, served)
        blog = page.locator("#instances tr", has_text="production/blog")
        expect(blog.locator("td.freshness")).to_have_text("● fresh")
        www = page.locator("#instances tr", has_text="production/www")
        expect(www.locator("td.freshness")).to_have_text("○ not due yet")
        shot(page, "instances")

        page.goto(f"{served.url}/instances/production/blog")
        expect(page.locator("#freshness")).to_contain_text("Backups: ● fresh")
        # its only deployment is plan-only: a sentence, not an empty chart
        expect(page.locator("#no-swap-windows")).to_contain_text("turned the maintenance page on")
        expect(page.locator("#swap-windows")).to_have_count(0)
        expect(page.locator("#next-backup")).not_to_contain_text("not scheduled")
        expect(page.locator("#last-drill")).to_contain_text("failed")
        expect(page.locator("#last-drill")).to_contain_text("checksum mismatch")
        sizes = page.locator("#backup-sizes g.bar")
        expect(sizes).to_have_count(3)
        values = sizes.evaluate_all("gs => gs.map(g => Number(g.getAttribute('data-value')))")
        assert values == [10 << 20, 12 << 20, 13 << 20]  # oldest first
        heights = sizes.evaluate_all(
            "gs => gs.map(g => Number(g.querySelector('rect').getAttribute('height')))"
        )
        assert heights[0] / heights[2] == pytest.approx(10 / 13, abs=0.01)
        windows = page.locator("#backup-windows g.bar")
        expect(windows).to_have_count(3)
        expect(page.locator("#backup-windows title").first).to_contain_text("seconds")
        shot(page, "instance-backups")
    finally:
        del served.app.extensions[BACKUPS_KEY]
        scheduler.shutdown()


def test_the_overview_query_finds_each_instances_latest_and_latest_good(serve, config_repo) -> None:
    """The grouped query against the plain reading of the history it replaced."""
    served = serve(config_repo)
    finished(served, served.push(ZERO, config_repo.sha()).json()["event"])
    statuses = (DeploymentStatus.SUCCESS, DeploymentStatus.FAILURE, DeploymentStatus.ERROR)
    t = time.time()
    with get_db(served.app).session() as db:
        for n in range(60):
            event = Event(
                forge="github",
                event_name="push",
                kind="push",
                delivery_id=f"mixed-{n}",
                received_at=t,
                status="dispatched",
                attempts=1,
            )
            db.add(event)
            db.flush()
            for i in range(7):
                if (n + i) % 3 == 0:
                    continue  # not every push touches every instance
                bad = i == 6 or (n * i) % 4 == 1  # instance i6 never succeeds
                db.add(
                    Deployment(
                        event_id=event.id,
                        key=f"p/i{i}" if n % 5 else f"plan/{i}",
                        project="p",
                        instance=f"i{i}",
                        context="swapyard",
                        mode="deploy" if n % 5 else "plan",
                        sha=f"{n:040x}",
                        status=statuses[1 + n % 2] if bad else statuses[0],
                        created_at=t,
                    )
                )
    with get_db(served.app).session() as db:
        rows = db.query(Deployment).filter(Deployment.mode == "deploy").order_by(Deployment.id)
        latest: dict[str, int] = {}
        good: dict[str, int] = {}
        for d in rows:
            latest[d.key] = d.id
            if d.status == DeploymentStatus.SUCCESS:
                good[d.key] = d.id
        found = latest_per_instance(db)
        assert [(d.key, d.id, ok.id if ok else None) for d, ok in found] == [
            (key, latest[key], good.get(key)) for key in sorted(latest)
        ]
        assert good.get("p/i6") is None and "p/i6" in latest
        assert count_instances(db) == len(latest)
        pages = [latest_per_instance(db, limit=3, offset=k) for k in range(0, len(latest), 3)]
        assert [d.key for page in pages for d, _ in page] == sorted(latest)


def test_the_overview_pages_past_its_page_size(serve, config_repo) -> None:
    served = serve(config_repo)
    finished(served, served.push(ZERO, config_repo.sha()).json()["event"])
    t = time.time()
    with get_db(served.app).session() as db:
        event = Event(
            forge="github",
            event_name="push",
            kind="push",
            delivery_id="many",
            received_at=t,
            status="dispatched",
            attempts=1,
        )
        db.add(event)
        db.flush()
        db.add_all(
            Deployment(
                event_id=event.id,
                key=f"fleet/n{i:03d}",
                project="fleet",
                instance=f"n{i:03d}",
                context="swapyard",
                mode="deploy",
                sha="f" * 40,
                status=DeploymentStatus.SUCCESS,
                created_at=t,
            )
            for i in range(INSTANCES_PER_PAGE + 5)
        )
    session = requests.Session()
    session.post(f"{served.url}/login", data={"token": TOKEN}, timeout=10)
    with get_db(served.app).session() as db:
        keys = [d.key for d, _ in latest_per_instance(db)]
    assert len(keys) > INSTANCES_PER_PAGE

    def listed(url: str) -> tuple[list[str], str]:
        r = session.get(url, timeout=10)
        assert r.status_code == 200
        return re.findall(r'<a href="/instances/([^"]+)">', r.text), r.text

    one, text = listed(f"{served.url}/")
    assert one == keys[:INSTANCES_PER_PAGE]
    assert "Page 1 of 2" in text and 'href="?page=2"' in text
    two, text = listed(f"{served.url}/?page=2")
    assert two == keys[INSTANCES_PER_PAGE:]
    assert 'href="?page=1"' in text and 'href="?page=3"' not in text
