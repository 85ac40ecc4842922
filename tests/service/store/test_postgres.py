"""Two `swapyard worker` processes on one database: every event and deployment runs once.

On PostgreSQL (Debian's server, started here) and on the SQLite default."""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from service.store.models import Deployment, Event, Step
from tests.service.conftest import ZERO, Served, answers, free_port, make_settings, wait_for
from tests.service.postgres import postgres_server


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_two_workers_run_each_event_once(tmp_path, config_repo, forge, launch, database, request):
    port = free_port()
    settings = make_settings(tmp_path, forge, port, workers=0)
    db_url = settings["database_url"] = (
        request.getfixturevalue("pg_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'data' / 'swapyard.db'}"
    )
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump(settings))
    log = tmp_path / "service.log"
    web = Served(f"http://127.0.0.1:{port}", None, config_repo)
    launch("web", "--config", str(config), "--port", str(port), log=log)

    wait_for(lambda: answers(port), what=f"swapyard serve on PostgreSQL ({log})")
    launch("worker", "--config", str(config), "--workers", "3", log=log)
    launch("worker", "--config", str(config), "--workers", "3", log=log)

    ids, before = [], ZERO
    for n in range(8):
        name = ("blog", "cloud", "www")[n % 3]
        after = config_repo.commit(f"{name} {n}", {f"instances/{name}/n.txt": f"{n}\n"})
        config_repo.push()
        ids.append(web.push(before, after, delivery=f"d{n}").json()["event"])
        before = after
    redelivered = web.push(ZERO, before, delivery="d7")  # a forge's redelivery: same id
    assert (redelivered.status_code, redelivered.json()["event"]) == (200, ids[-1])

    engine = create_engine(db_url)

    def all_done() -> bool:
        with Session(engine) as s:
            open_events = s.scalar(
                select(func.count()).where(Event.status.in_(("queued", "processing")))
            )
            open_deps = s.scalar(
                select(func.count()).where(Deployment.status.in_(("waiting", "running")))
            )
            return (
                open_events == 0
                and open_deps == 0
                and s.scalar(select(func.count()).select_from(Event)) == len(ids)
            )

    wait_for(all_done, 60, f"both workers to drain the queue ({log})")
    with Session(engine) as s:
        assert [e.attempts for e in s.scalars(select(Event))] == [1] * len(ids)
        for dep in s.scalars(select(Deployment)):
            validations = s.scalar(
                select(func.count()).where(Step.deployment_id == dep.id, Step.name == "validate")
            )
            expected = 0 if dep.status == "superseded" else 1
            assert validations == expected, (dep.key, dep.sha, dep.status)
            assert dep.status in ("success", "superseded")
    engine.dispose()
