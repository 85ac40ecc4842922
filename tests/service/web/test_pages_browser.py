"""The pages in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.service.conftest import TOKEN, ZERO, wait_for
from tests.service.worker.test_worker import finished, push_broken_blog


def chromium() -> str:
    """Debian's Chromium from PATH (SWAPYARD_CHROMIUM names another binary)."""
    found = os.environ.get("SWAPYARD_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not on PATH; apt-get install chromium (scripts/setup --test does)")
    return found


@pytest.fixture
def page():
    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_log_in_and_follow_an_instance_to_its_deployment(serve, config_repo, page):
    served = serve(config_repo)
    before = config_repo.sha()
    finished(served, served.push(ZERO, before).json()["event"])
    bad = config_repo.read("instances/blog/apps.config").replace("domains:", "domainz:", 1)
    after = config_repo.commit("break blog", {"instances/blog/apps.config": bad})
    config_repo.push()
    finished(served, served.push(before, after).json()["event"])

    page.goto(f"{served.url}/")
    expect(page).to_have_url(f"{served.url}/login?next=/?")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")

    row = page.locator("#instances tr", has_text="production/blog")
    expect(row).to_contain_text(before[:12])  # the current commit is the last good one
    expect(row).to_contain_text("failure")
    row.get_by_role("link", name="production/blog").click()
    expect(page.locator("h1")).to_have_text("production/blog")
    failed = page.locator("#deployments tr", has_text="failure")
    expect(failed).to_contain_text("instances/blog/apps.config")
    failed.get_by_role("link").first.click()
    expect(page.locator("#status")).to_have_text("failure")
    expect(page.locator("#steps")).to_contain_text("validate")
    expect(page.locator("#log")).to_contain_text("apps.config")


def test_the_push_status_link_leads_to_the_push_and_its_deployments(
    serve, config_repo, forge, page
):
    served = serve(config_repo)
    _, event = push_broken_blog(served, config_repo)
    sent = wait_for(lambda: forge.statuses("swapyard"), what="the push's status")
    [link] = {s["target_url"] for s in sent}  # what the forge links to

    page.goto(link)
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(link)
    expect(page.locator("h1")).to_have_text(f"Event {event['id']}: push to refs/heads/main")
    expect(page.locator("#status")).to_have_text("dispatched")
    expect(page.locator("#deployments tr", has_text="production/www")).to_contain_text("success")
    failed = page.locator("#deployments tr", has_text="production/blog")
    expect(failed).to_contain_text("failure")
    failed.get_by_role("link").first.click()
    expect(page.locator("#log")).to_contain_text("apps.config")
