"""The hook endpoint and the inbox's group commit, over real HTTP on a real SQLite file."""

from __future__ import annotations

import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from service.settings import settings_of
from tests.service.conftest import ZERO, push_body, wait_for


@pytest.fixture
def web(serve, config_repo):
    return serve(config_repo, workers=0)


def database(web) -> Path:
    return settings_of(web.app).data_dir / "swapyard.db"


def events(web) -> list[tuple[int, str]]:
    with sqlite3.connect(database(web)) as db:
        return db.execute("select id, delivery_id from events order by id").fetchall()


def test_deliveries_waiting_for_the_writer_are_committed_together(web, config_repo):
    inbox = web.app.extensions["swapyard.inbox"]
    body = push_body(config_repo, ZERO, config_repo.sha())
    deliveries = [str(uuid.uuid4()) for _ in range(6)] + ["twice"] * 2
    batches = inbox.batches
    # Another process holds SQLite's write lock: the first delivery's commit waits for
    # it, and the seven that arrive meanwhile queue behind that one.
    blocker = sqlite3.connect(database(web), isolation_level=None)
    blocker.execute("begin immediate")
    try:
        with ThreadPoolExecutor(len(deliveries)) as pool:
            answers = pool.map(lambda d: web.hook("github", "push", body, delivery=d), deliveries)
            wait_for(lambda: inbox.waiting == len(deliveries) - 1, what="deliveries to queue")
            assert events(web) == []  # nothing is acknowledged before its commit
            blocker.execute("commit")
            answers = list(answers)
    finally:
        blocker.close()
    assert inbox.batches == batches + 2  # the first delivery alone, then the seven together
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [202] * 7
    twice = [a.json() for a, d in zip(answers, deliveries, strict=True) if d == "twice"]
    assert sorted(a["status"] for a in twice) == ["duplicate", "queued"]
    assert twice[0]["event"] == twice[1]["event"]
    stored = events(web)
    assert sorted(d for _, d in stored) == sorted(set(deliveries))
    ids = {a.json()["event"] for a in answers}
    assert ids == {i for i, _ in stored}


def test_a_database_failure_is_500_and_the_delivery_can_be_sent_again(web, config_repo):
    with sqlite3.connect(database(web)) as db:
        db.execute("alter table events rename to events_moved_away")
    r = web.push(ZERO, config_repo.sha(), delivery="retried")
    assert r.status_code == 500
    assert "not stored" in r.json()["error"]
    with sqlite3.connect(database(web)) as db:
        db.execute("alter table events_moved_away rename to events")
    again = web.push(ZERO, config_repo.sha(), delivery="retried")
    assert again.status_code == 202, again.text
    assert [d for _, d in events(web)] == ["retried"]


def test_a_chunked_body_is_read_and_limited(web, config_repo):
    import json

    from tests.service.conftest import SECRET
    from tests.service.deliveries import headers as forge_headers

    raw = json.dumps(push_body(config_repo, ZERO, config_repo.sha())).encode()
    headers = forge_headers("github", "push", raw, SECRET, "chunked")

    def chunks(data: bytes):
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    r = requests.post(f"{web.url}/hooks/github", data=chunks(raw), headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    huge = raw + b" " * (64 * 1024)
    headers = forge_headers("github", "push", huge, SECRET, "chunked-huge")
    r = requests.post(f"{web.url}/hooks/github", data=chunks(huge), headers=headers, timeout=10)
    assert r.status_code == 413
    assert [d for _, d in events(web)] == ["chunked"]


def test_only_post_is_accepted(web):
    r = requests.get(f"{web.url}/hooks/github", timeout=5)
    assert r.status_code == 405
    assert "POST" in r.json()["error"]
    assert requests.get(f"{web.url}/healthz", timeout=5).json() == {"status": "ok"}
