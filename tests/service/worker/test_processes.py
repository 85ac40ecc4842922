"""Real processes: `swapyard serve` killed with SIGKILL after the 202, then restarted,
with the work done by a separate `swapyard worker` process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from tests.service.conftest import ZERO, Served, answers, free_port, make_settings, wait_for
from tests.service.worker.test_worker import finished


def test_event_acknowledged_then_killed_is_processed_after_restart(
    tmp_path, config_repo, forge, launch
):
    port = free_port()
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump(make_settings(tmp_path, forge, port, workers=0)))
    log = tmp_path / "service.log"
    web = Served(f"http://127.0.0.1:{port}", None, config_repo)

    first = launch("serve", "--config", str(config), "--port", str(port), log=log)
    wait_for(lambda: answers(port), what=f"swapyard serve to listen ({log})")
    answer = web.push(ZERO, config_repo.sha())
    assert answer.status_code == 202
    os.killpg(first.pid, signal.SIGKILL)  # the whole service, right after the acknowledgement
    first.wait(10)
    wait_for(lambda: not answers(port), what="the killed service to stop answering")

    launch("serve", "--config", str(config), "--port", str(port), "--workers", "0", log=log)
    wait_for(lambda: answers(port), what="the restarted service")
    assert web.api(f"/api/events/{answer.json()['event']}")["status"] == "queued"
    launch("worker", "--config", str(config), "--workers", "2", log=log)
    event = finished(web, answer.json()["event"])
    assert sorted(d["instance"] for d in event["deployments"]) == ["blog", "cloud", "www"]
    assert {d["status"] for d in event["deployments"]} == {"success"}
    wait_for(lambda: forge.statuses("swapyard/production/www"), what="statuses from the worker")


def test_history_command(tmp_path, config_repo, forge, serve):
    served = serve(config_repo)
    finished(served, served.push(ZERO, config_repo.sha()).json()["event"])
    from click.testing import CliRunner

    from service.cli.main import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    result = CliRunner().invoke(main, ["history", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "production/blog" in result.output and "success" in result.output


def test_serve_refuses_to_start_without_a_secret(tmp_path, launch):
    log = tmp_path / "out.log"
    proc = launch("serve", "--port", str(free_port()), log=log)
    assert proc.wait(30) == 1
    assert "no webhook secret configured" in log.read_text()


def test_the_worker_process_ends_with_a_killed_main_process(tmp_path, config_repo, forge, launch):
    port = free_port()
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump(make_settings(tmp_path, forge, port)))
    log = tmp_path / "service.log"
    main = launch("serve", "--config", str(config), "--port", str(port), log=log)
    wait_for(lambda: answers(port), what=f"swapyard serve to listen ({log})")
    [child] = Path(f"/proc/{main.pid}/task/{main.pid}/children").read_text().split()
    main.kill()  # SIGKILL to the main process only: nothing of it can clean up
    main.wait(10)
    wait_for(lambda: not Path(f"/proc/{child}").exists(), what="the orphaned worker to end")
    assert not answers(port)
