"""The pages after real pushes: a first deploy, a swap, a failed swap and a backup, in Chromium.

Push-to-live's world (the forge's hook, the service over HTTP, the local
provider on the real Docker engine): every page a person opens after those
pushes passes the accessibility check and is written as a screenshot, the
swap's timeline has one bar per journaled step with the 503 band from
`maintenance_old` to `switch_traffic`, the failed swap's page marks its
failed step, and the instance page charts the swap and the backup.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_push_to_live import (
    NOTES_CONFIG,
    TOKEN,
    World,
    _cli,
    push_then_swap,
    push_with_backups,
    world,
)
from tests.service.web import a11y
from tests.service.web.test_pages_browser import page

__all__ = ["page", "world"]  # push-to-live's world, Debian's Chromium

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def seconds(step: dict[str, Any]) -> float:
    started = dt.datetime.fromisoformat(step["started_at"])
    finished = dt.datetime.fromisoformat(step["finished_at"] or step["started_at"])
    return (finished - started).total_seconds()


def look(page: Page, name: str) -> None:
    a11y.check(page)
    a11y.screenshot(page, f"e2e-{name}")


@pytest.mark.parametrize("world", [{"health_timeout": 8}], indirect=True)
def test_pages_after_a_swap_a_failed_swap_and_a_backup(world: World, page: Page) -> None:
    from service.quickstart.steps import api, wait_for_push

    first, second = push_then_swap(world)
    broken = NOTES_CONFIG.replace("exec httpd -f -p 8080", "exec httpd -f -p 8081")
    world.commit("notes on the wrong port", {"instances/notes/apps.config": broken})
    sha, _ = world.push()
    [failed] = wait_for_push(world.url, TOKEN, sha, timeout=180)
    assert failed["status"] == "failure", failed
    sha, _ = push_with_backups(world)
    [with_backups] = wait_for_push(world.url, TOKEN, sha, timeout=180)
    assert with_backups["status"] == "success", with_backups
    key = f"{world.project}/notes"
    now = _cli(world, "backup", "now", key)
    assert now.returncode == 0 and "succeeded" in now.stdout, now.stderr

    page.goto(f"{world.url}/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#instances")).to_contain_text(key)
    look(page, "overview")

    swap = api(world.url, TOKEN, f"/deployments/{second['id']}")
    page.goto(f"{world.url}/deployments/{second['id']}")
    bars = page.locator("#timeline g.bar")
    expect(bars).to_have_count(len(swap["steps"]))
    names = bars.evaluate_all("gs => gs.map(g => g.getAttribute('data-step'))")
    assert names == [s["name"] for s in swap["steps"]]
    drawn = bars.evaluate_all("gs => gs.map(g => Number(g.getAttribute('data-seconds')))")
    assert drawn == pytest.approx([seconds(s) for s in swap["steps"]], abs=2e-3)
    band = page.locator("#timeline g.window")
    expect(band).to_have_count(1)
    assert {"maintenance_old", "switch_traffic"} <= set(names)
    expect(page.locator("#window")).to_contain_text("Maintenance page (503) on for")
    look(page, "deployment-swap")

    page.goto(f"{world.url}/deployments/{failed['id']}")
    expect(page.locator("#timeline g.bar.failed")).not_to_have_count(0)
    expect(page.locator(".failed-step", has_text="health_check")).to_contain_text("502")
    look(page, "deployment-failed-swap")

    page.goto(f"{world.url}/deployments/{first['id']}")
    page.locator("#push").click()
    expect(page.locator(f"a[href='/deployments/{first['id']}']")).not_to_have_count(0)
    look(page, "push")

    page.goto(f"{world.url}/instances/{key}")
    expect(page.locator("#swap-windows g.bar")).not_to_have_count(0)
    expect(page.locator("#backup-sizes g.bar")).to_have_count(1)
    expect(page.locator("#freshness")).to_contain_text("fresh")
    look(page, "instance")
