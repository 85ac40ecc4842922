"""The build: each part is handed its collaborators once, by constructor, by the app factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.conftest import make_settings


@pytest.mark.parametrize("backups", [True, False], ids=["backups", "no-backups"])
def test_a_deploying_service_wires_deployer_backups_and_runner(tmp_path: Path, backups: bool):
    from service.web.app import create_app
    from service.worker.backups import get_backups
    from service.worker.deployments import WaitNotice
    from service.worker.threads import get_worker

    app = create_app(make_settings(tmp_path, None, 9, deploy=True, backups=backups))
    worker = get_worker(app)
    deployer = worker.deployer
    assert deployer is not None
    assert worker.deployments.pipeline.executor is deployer
    assert isinstance(deployer.on_wait, WaitNotice)  # a deploy waiting shows on its deployment
    assert worker.events.workspace is worker.deployments.workspace  # one lease identity
    assert worker.missed_pushes.mirrors is worker.events.workspace.mirrors
    assert get_backups(app) is worker.backups
    if backups:
        assert worker.backups is not None
        assert worker.backups.scheduler.provider is deployer.provider  # one provider, opened once
        assert deployer.on_live == worker.backups.instance_live
        assert deployer.on_destroyed == worker.backups.instance_destroyed
    else:
        assert worker.backups is None
        assert deployer.on_live is None and deployer.on_destroyed is None


def test_a_plan_only_service_has_no_deployer_and_no_backups(tmp_path: Path):
    from service.web.app import create_app
    from service.worker.backups import get_backups
    from service.worker.threads import get_worker

    app = create_app(make_settings(tmp_path, None, 9, deploy=False))
    worker = get_worker(app)
    assert worker.deployer is None and worker.backups is None and get_backups(app) is None
    assert worker.deployments.pipeline.executor is None  # validate and plan only
