"""The HTML pages over plain HTTP: login, then instances, history and one deployment."""

from __future__ import annotations

import requests

from tests.service.conftest import TOKEN, ZERO
from tests.service.worker.test_worker import finished


def test_pages_need_the_token_and_show_the_history(serve, config_repo):
    served = serve(config_repo)
    sha = config_repo.sha()
    event = finished(served, served.push(ZERO, sha).json()["event"])
    blog = next(d for d in event["deployments"] if d["instance"] == "blog")

    anonymous = requests.get(f"{served.url}/", timeout=5, allow_redirects=False)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    browser = requests.Session()
    wrong = browser.post(f"{served.url}/login", data={"token": "nope"}, timeout=5)
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    page = browser.post(
        f"{served.url}/login?next=/deployments/{blog['id']}", data={"token": TOKEN}, timeout=5
    )
    assert page.status_code == 200
    assert sha in page.text and "validate" in page.text
    home = browser.get(f"{served.url}/", timeout=5).text
    assert "production/blog" in home and sha[:12] in home
    history = browser.get(f"{served.url}/instances/production/blog", timeout=5)
    assert history.status_code == 200 and f"/deployments/{blog['id']}" in history.text
    assert browser.get(f"{served.url}/deployments/999999", timeout=5).status_code == 404
