"""Pages a person can read: the filters alone, then every page after real pushes in Chromium.

The filters (service/web/format.py) are checked value by value; then the service
runs on loopback with its worker, takes a good push and a failing one whose clone
URL is an https forge address, and each page is visited in Debian's Chromium:
readable values, commit links, empty-state sentences, the push page linked both
ways, the accessibility pass (tests/service/web/a11y.py) and a screenshot each.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect, sync_playwright

from service.web.format import commit, commit_url, duration, size, web_base, when
from tests.service.conftest import REPO_NAME, TOKEN, ZERO, gitlab_push_body, push_body
from tests.service.web import a11y
from tests.service.web.test_pages_browser import chromium
from tests.service.worker.test_worker import finished

NOW = dt.datetime(2026, 12, 1, 21, 0, 0, tzinfo=dt.UTC)
FORGE_WEB = "https://forge.example/owner/config"
MICROSECOND_STAMP = re.compile(r"T\d\d:\d\d:\d\d\.\d")


# -- the filters --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2026-12-01T20:51:32.633442+00:00", "2026-12-01 20:51 UTC · 8 min ago"),
        (NOW.timestamp() - 2, "2026-12-01 20:59 UTC · just now"),
        (NOW.timestamp() - 42, "2026-12-01 20:59 UTC · 42 s ago"),
        (NOW.timestamp() - 3 * 3600 - 5, "2026-12-01 17:59 UTC · 3 h ago"),
        (NOW.timestamp() - 86400 * 1.5, "2026-11-30 09:00 UTC · 1 day ago"),
        (NOW.timestamp() - 86400 * 4, "2026-11-27 21:00 UTC · 4 days ago"),
        (dt.datetime(2026, 12, 1, 21, 10), "2026-12-01 21:10 UTC · in 10 min"),  # naive: UTC
        ("2026-12-01T23:00:00+02:00", "2026-12-01 21:00 UTC · just now"),
    ],
)
def test_when_says_the_utc_minute_and_how_long_ago(value, text):
    html = str(when(value, now=NOW))
    assert re.sub(r"<[^>]+>", "", html) == text
    assert re.match(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" title="[^"]+ UTC">', html)


def test_when_keeps_the_exact_second_in_its_title_and_says_a_dash_for_none():
    html = str(when(1796158292.633442, now=NOW))
    assert 'datetime="2026-12-01T20:51:32Z"' in html
    assert 'title="2026-12-01 20:51:32 UTC"' in html
    assert str(when(None)) == "—"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0.4 s"),
        (15.905, "15.9 s"),
        (184, "3 min 4 s"),
        (2 * 3600 + 5 * 60 + 9, "2 h 5 min"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
        (-0.2, "0.0 s"),  # clocks of two machines
        (None, "—"),
    ],
)
def test_duration_in_human_units(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (1258291, "1.2 MiB"), (5 * 2**40, "5.0 TiB")],
)
def test_size_in_binary_units(count, text):
    assert size(count) == text
    assert size(None) == "—"


@pytest.mark.parametrize(
    ("clone_url", "base"),
    [
        ("https://github.com/acme/server-config.git", "https://github.com/acme/server-config"),
        ("https://bot:s3cret@git.example:8443/acme/cfg.git", "https://git.example:8443/acme/cfg"),
        ("http://gitea.lan/acme/cfg/", "http://gitea.lan/acme/cfg"),
        ("git@gitlab.example:group/sub/cfg.git", "https://gitlab.example/group/sub/cfg"),
        ("ssh://git@git.example:2222/acme/cfg.git", "https://git.example/acme/cfg"),
        ("/srv/git/config.git", None),
        ("file:///srv/git/config.git", None),
        ("git://git.example/acme/cfg.git", None),
        ("javascript:alert(1)//x/y", None),
        ("javascript:alert(1)", None),
        ("https://git.example/o/r%22onmouseover", None),
        ("https://git.example/onlyone", None),
        ("", None),
        (None, None),
    ],
)
def test_web_base_comes_only_from_http_or_ssh_clone_urls(clone_url, base):
    assert web_base(clone_url) == base


def test_commit_urls_follow_each_forges_pattern():
    sha = "a" * 40
    assert commit_url(sha, "https://github.com/o/r.git", "github") == (
        f"https://github.com/o/r/commit/{sha}"
    )
    assert commit_url(sha, "git@codeberg.org:o/r.git", "forgejo") == (
        f"https://codeberg.org/o/r/commit/{sha}"
    )
    assert commit_url(sha, "https://gitea.lan/o/r.git", "gitea") == (
        f"https://gitea.lan/o/r/commit/{sha}"
    )
    assert commit_url(sha, "https://gitlab.com/g/s/r.git", "gitlab") == (
        f"https://gitlab.com/g/s/r/-/commit/{sha}"
    )
    assert commit_url(sha, "https://x.example/o/r.git", "unknown-forge") is None
    assert commit_url("not-a-sha", "https://github.com/o/r.git", "github") is None
    assert commit_url("0" * 40, "https://github.com/o/r.git", "github") is None


def test_commit_is_a_linked_short_sha_or_just_the_short_sha():
    sha = "0123456789abcdef0123456789abcdef01234567"
    linked = str(commit(sha, {"clone_url": "https://github.com/o/r.git", "forge": "github"}))
    assert linked == (
        f'<a href="https://github.com/o/r/commit/{sha}" class="commit">'
        f'<code title="{sha}">0123456789ab</code></a>'
    )
    local = str(commit(sha, {"clone_url": "/srv/git/r.git", "forge": "github"}))
    assert local == f'<code title="{sha}">0123456789ab</code>'
    assert str(commit(sha)) == local
    assert str(commit(None)) == "—"
    hostile = str(commit('"><script>', {"clone_url": "https://github.com/o/r", "forge": "github"}))
    assert "<script>" not in hostile and "href" not in hostile


# -- the checker itself -------------------------------------------------------------


@pytest.fixture
def browser():
    executable = chromium()
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


BAD_PAGE = """<!doctype html><html><head><title>bad</title></head><body>
<h2>starts at h2</h2><h4>skips h3</h4>
<p style="color:#aaa">pale grey on white</p>
<input name="q"><a href="/x"></a><button style="outline:none">go</button>
<svg width="10" height="10"><rect width="10" height="10"/></svg>
<pre id="wide" style="width:5em;overflow-x:auto">a line much wider than five em</pre>
</body></html>"""

GOOD_PAGE = """<!doctype html><html lang="en"><head><title>good</title></head><body>
<h1>Title</h1><h2>Part</h2><p style="color:#595959">dark enough grey</p>
<label>Search <input name="q"></label> <a href="/x">somewhere</a> <button>go</button>
<svg width="10" height="10" role="img" aria-label="a square"><rect width="10" height="10"/></svg>
<svg width="10" height="10" aria-hidden="true"><rect width="10" height="10"/></svg>
</body></html>"""


def test_the_accessibility_pass_finds_each_kind_of_problem(browser):
    page = browser.new_page()
    page.set_content(BAD_PAGE)
    found = "\n".join(a11y.problems(page))
    for expected in (
        "html has no lang",
        "first heading is not an h1",
        "heading skips a level: h2 then h4",
        "contrast 2.32:1 under 4.5:1: p",
        "form control without a label: input",
        "a without a name",
        "svg with no accessible name",
        "focus is not visible on button",
        'scrollable region a keyboard cannot reach: pre#wide "a line much wider',
    ):
        assert expected in found, found
    page.set_content(GOOD_PAGE)
    assert a11y.problems(page) == []


# -- the pages after real pushes ----------------------------------------------------


def forge_push(served, config_repo, before: str, after: str) -> dict:
    """Deliver a GitHub push whose clone URL is an https forge address (the service
    fetches from the local bare repository, named in its `repositories` setting)."""
    body = push_body(config_repo, before, after)
    body["repository"]["clone_url"] = f"{FORGE_WEB}.git"
    response = served.hook("github", "push", body)
    assert response.status_code in (200, 202), response.text
    return finished(served, response.json()["event"])


def visit(page, url: str, name: str) -> str:
    """Open `url`, run the accessibility pass, keep a screenshot; return the HTML."""
    page.goto(url)
    a11y.check(page)
    a11y.screenshot(page, name)
    html = page.content()
    assert not MICROSECOND_STAMP.search(html), MICROSECOND_STAMP.search(html)
    return html


def test_each_page_is_readable_accessible_and_linked(serve, config_repo, browser):
    served = serve(config_repo, repositories={REPO_NAME: str(config_repo.bare)})
    page = browser.new_page()

    visit(page, f"{served.url}/login", "login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    html = visit(page, f"{served.url}/", "instances-empty")
    expect(page.locator("#no-instances")).to_contain_text("No deployments yet: push to a mapped")

    first = config_repo.sha()
    forge_push(served, config_repo, ZERO, first)
    bad = config_repo.read("instances/blog/apps.config").replace("domains:", "domainz:", 1)
    second = config_repo.commit(
        "break blog", {"instances/blog/apps.config": bad, "instances/www/z.txt": "ok\n"}
    )
    config_repo.push()
    event = forge_push(served, config_repo, first, second)
    failed = next(d for d in event["deployments"] if d["instance"] == "blog")
    assert failed["status"] == "failure"

    html = visit(page, f"{served.url}/", "instances")
    blog = page.locator("#instances tr", has_text="production/blog")
    expect(blog).to_contain_text("failure")  # the state stays a word
    expect(blog.locator(f'a.commit[href="{FORGE_WEB}/commit/{first}"]')).to_have_text(first[:12])
    expect(blog.locator("time")).to_contain_text(re.compile(r"(just now|\d+ s ago)$"))
    assert html.count('class="commit"') >= 4

    html = visit(page, f"{served.url}/instances/production/blog", "instance")
    row = page.locator("#deployments tr", has_text="failure")
    expect(row.locator("a.commit")).to_have_attribute("href", f"{FORGE_WEB}/commit/{second}")
    expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^\d+\.\d s$"))

    html = visit(page, f"{served.url}/deployments/{failed['id']}", "deployment-failed")
    expect(page.locator("#status")).to_have_text("failure")
    expect(page.locator("#steps tr", has_text="validate").locator("td").nth(3)).to_have_text(
        re.compile(r"^\d+\.\d s$")
    )
    page.locator("#push").click()  # deployment -> its push

    expect(page).to_have_url(f"{served.url}/events/{event['id']}")
    visit(page, page.url, "push")
    expect(page.locator("#commit a.commit").first).to_have_attribute(
        "href", f"{FORGE_WEB}/commit/{second}"
    )
    changed = page.locator("#deployments tbody tr")
    expect(changed).to_have_count(len(event["deployments"]))
    row = page.locator("#deployments tr", has_text="production/blog")
    expect(row).to_contain_text("failure")
    expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^\d+\.\d s$"))
    row.get_by_role("link", name=f"deployment {failed['id']}").click()  # push -> deployment
    expect(page).to_have_url(f"{served.url}/deployments/{failed['id']}")

    visit(page, f"{served.url}/deployments/999999", "missing")


def test_an_ignored_push_says_why_it_changed_nothing(serve, config_repo, browser):
    served = serve(config_repo, repositories={"owner/other": str(config_repo.bare)})
    sha = config_repo.sha()
    event = forge_push_to(served, config_repo, sha, "main")  # owner/config: not served
    assert event["status"] == "ignored" and event["deployments"] == []
    page = browser.new_page()
    page.goto(f"{served.url}/login?next=/events/{event['id']}")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    visit(page, page.url, "push-ignored")
    expect(page.locator("#no-deployments")).to_contain_text("None: this push changed no instance")
    expect(page.locator("#commit a.commit")).to_have_attribute("href", f"{FORGE_WEB}/commit/{sha}")
    expect(page.locator("#commit")).to_contain_text("(a new branch)")


def forge_push_to(served, config_repo, sha: str, branch: str) -> dict:
    body = push_body(config_repo, ZERO, sha, branch)
    body["repository"]["clone_url"] = f"{FORGE_WEB}.git"
    response = served.hook("github", "push", body)
    assert response.status_code in (200, 202), response.text
    return finished(served, response.json()["event"])


def test_a_gitlab_push_links_its_commit_to_gitlabs_commit_page(serve, config_repo, browser):
    served = serve(config_repo, repositories={REPO_NAME: str(config_repo.bare)})
    sha = config_repo.sha()
    body = gitlab_push_body(config_repo, ZERO, sha)
    web = "https://gitlab.example/group/sub/config"
    body["project"]["git_http_url"] = body["repository"]["git_http_url"] = f"{web}.git"
    response = served.hook("gitlab", "Push Hook", body)
    assert response.status_code in (200, 202), response.text
    event = finished(served, response.json()["event"])
    page = browser.new_page()
    page.goto(f"{served.url}/login?next=/events/{event['id']}")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    visit(page, page.url, "push-gitlab")
    expect(page.locator("#commit a.commit")).to_have_attribute("href", f"{web}/-/commit/{sha}")
    deployment = event["deployments"][0]["id"]
    page.get_by_role("link", name=f"deployment {deployment}").click()
    expect(page.locator("a.commit").first).to_have_attribute("href", f"{web}/-/commit/{sha}")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_times_turn_local_with_javascript_and_stay_utc_without(serve, config_repo, browser, zone):
    served = serve(config_repo, repositories={REPO_NAME: str(config_repo.bare)})
    forge_push(served, config_repo, ZERO, config_repo.sha())
    for script in (True, False):
        context = browser.new_context(timezone_id=zone, java_script_enabled=script)
        page = context.new_page()
        page.goto(f"{served.url}/login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        stamp = page.locator("#instances time").first
        utc = dt.datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))
        shown = stamp.locator(".abs").inner_text()
        if script:
            local = utc.astimezone(ZoneInfo(zone))
            assert shown.startswith(local.strftime("%Y-%m-%d %H:%M ")), shown
            assert not shown.endswith("UTC"), shown
        else:
            assert shown == utc.strftime("%Y-%m-%d %H:%M UTC")
        context.close()


def test_an_instance_without_backups_says_so_then_shows_a_run_in_readable_units(
    serve, config_repo, browser
):
    """Backups on, no worker threads: the instance's deployment row is stored as the worker
    stores it, and the backup run is journaled through the backup history, as a run does."""
    from deploy.backup.journal import RunState
    from service.store.db import get_db
    from service.store.models import Deployment, Event
    from service.worker.backups import get_backups

    served = serve(config_repo, deploy=True, backups=True, workers=0)
    sha = config_repo.sha()
    with get_db(served.app).session() as db:
        event = Event(
            forge="github",
            event_name="push",
            kind="push",
            delivery_id="d-1",
            received_at=NOW.timestamp(),
            status="dispatched",
            repository=REPO_NAME,
            clone_url=f"{FORGE_WEB}.git",
            ref="refs/heads/main",
            before=ZERO,
            after=sha,
        )
        db.add(event)
        db.flush()
        db.add(
            Deployment(
                event_id=event.id,
                key="production/blog",
                project="production",
                instance="blog",
                context="swapyard/production/blog",
                mode="deploy",
                sha=sha,
                status="success",
                created_at=NOW.timestamp(),
                started_at=NOW.timestamp(),
                finished_at=NOW.timestamp() + 15.905,
            )
        )
    page = browser.new_page()
    page.goto(f"{served.url}/login?next=/instances/production/blog")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    visit(page, page.url, "instance-no-backups")
    expect(page.locator("#no-backups")).to_contain_text("No backups yet")
    expect(page.locator("#deployments tbody tr td").nth(5)).to_have_text("15.9 s")

    history = get_backups(served.app).scheduler.history
    run = history.begin("production", "blog", "backup")
    history.finish(
        run, RunState.SUCCEEDED, snapshot_id="5f3a9c1e" * 8, bytes=1258291, duration=3.2, window=4.5
    )
    history.raise_alert("production", "blog", "stale", "no backup in 26 h (allowed 25 h)")
    visit(page, page.url, "instance-backups")
    expect(page.locator("#no-backups")).to_have_count(0)
    expect(page.get_by_text("Alert (stale, since")).to_contain_text(
        re.compile(r"UTC · (just now|\d+ s ago)\): no backup in 26 h")
    )
    row = page.locator("#backups tbody tr")
    expect(row).to_contain_text("succeeded")
    cells = [row.locator("td").nth(i) for i in (4, 5, 6)]
    for cell, text in zip(cells, ("1.2 MiB", "4.5 s", "3.2 s"), strict=True):
        expect(cell).to_have_text(text)
    expect(row.locator("td").nth(7).locator("time")).to_contain_text(
        re.compile(r"UTC · (just now|\d+ s ago)$")
    )
