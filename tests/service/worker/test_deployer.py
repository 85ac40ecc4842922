"""The deployer refuses an instance that names another provider than the service's."""

from __future__ import annotations

from pathlib import Path

import schemas
from tests.service.conftest import make_settings


def test_an_instance_for_another_provider_is_not_deployed(tmp_path: Path) -> None:
    from handlers.gitops.pipeline import DeploymentStatus
    from service.web.app import create_app
    from service.worker.threads import get_worker

    repo = tmp_path / "repo" / "instances" / "web"
    repo.mkdir(parents=True)
    (repo / "apps.config").write_text(
        "instance:\n  provider: lxd\napps:\n  - name: site\n    catalog: static\n"
        "    domains: [site.test]\n    settings:\n      root: site\n"
    )
    (repo / "files" / "site").mkdir(parents=True)
    (repo / "files" / "site" / "index.html").write_text("hi\n")
    (instance,) = schemas.load_repo(tmp_path / "repo").instances
    app = create_app(make_settings(tmp_path, None, 9, deploy=True, backups=False))
    deployer = get_worker(app).deployer
    assert deployer is not None
    outcome = deployer(instance, "a" * 40)
    assert outcome.status == DeploymentStatus.FAILURE
    assert "instances/web/apps.config" in outcome.summary
    assert "'lxd'" in outcome.summary and "'local'" in outcome.summary
    assert deployer.provider.list_instances() == []
