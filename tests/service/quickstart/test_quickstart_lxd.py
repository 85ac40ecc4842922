"""The quick start on the lxd provider: its config, its refusals, and the whole flow for real.

The flow test runs `service.quickstart.flow.main` as `scripts/quickstart
--provider lxd` does after `scripts/setup --lxd`: the example repository's
three production instances as system containers on this machine's LXD
daemon, a swap, a backup, then `--stop`. It takes about three minutes on
two cores. Its LXD projects and addresses are the tests' own
(SWAPYARD_LXD_PROJECT_PREFIX and SWAPYARD_LXD_SUBNETS, which the service it
starts reads), so a user's quick start on the same daemon is not touched.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.quickstart.steps import Layout, QuickstartError, write_config
from service.settings import load_settings


def test_written_config_for_lxd_loads_with_the_lxd_provider(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    extra = {"lxd_image": "swapyard-base-0123456789abcdef", "ready_timeout": 300.0}
    write_config(lay, 8090, "127.0.0.1:8000", "127.0.0.1:2119", {"a:1": "b:1"}, "lxd", extra)
    settings = load_settings({"config_file": str(lay.config)}, environ={})
    assert settings.provider == "lxd"
    assert settings.provider_options["lxd_image"] == "swapyard-base-0123456789abcdef"
    assert settings.provider_options["edge_listen"] == ("127.0.0.1:8000",)
    assert settings.provider_options["copy_images"] is True  # offline stand-ins go in
    assert settings.image_map == {"a:1": "b:1"}
    assert settings.ready_timeout == 300.0


def test_an_unknown_provider_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(QuickstartError, match=r"--provider 'memory': expected one of local, lxd"):
        write_config(Layout(tmp_path), 8090, "127.0.0.1:8000", "127.0.0.1:2119", {}, "memory")


def test_switching_the_provider_of_a_quick_start_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.quickstart.flow import main

    lay = Layout(tmp_path / "qs")
    lay.base.mkdir()
    write_config(lay, 8090, "127.0.0.1:8000", "127.0.0.1:2119", {})  # local, as before
    before = lay.config.read_text()
    assert main(["--provider", "lxd", "--dir", str(lay.base)]) == 1
    err = capsys.readouterr().err
    assert "runs the local provider's instances" in err and "--stop" in err, err
    assert str(lay.base) in err
    assert lay.config.read_text() == before  # nothing written, nothing started
    assert not lay.pid.exists() and not lay.clone.exists()


@pytest.fixture
def lxd_quickstart(
    tmp_path: Path, lxd_client: Any, base_image: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Layout]:
    """A quick start directory whose service uses the tests' LXD prefix and subnets."""
    from deploy.providers.lxd.provider import LxdProvider
    from tests.deploy.providers.lxd.fixtures import PREFIX, SUBNETS, lxd_cleanup

    monkeypatch.setenv("SWAPYARD_LXD_PROJECT_PREFIX", PREFIX)
    monkeypatch.setenv("SWAPYARD_LXD_SUBNETS", SUBNETS)
    lay = Layout(tmp_path / "qs")
    try:
        yield lay
    finally:
        from service.quickstart.steps import stop_service

        stop_service(lay)
        if lay.config.exists():
            config = yaml.safe_load(lay.config.read_text())
            provider = LxdProvider(
                config["state_dir"],
                ex_lxd_project_prefix=PREFIX,
                ex_lxd_subnets=SUBNETS,
                ex_edge_listen=(config["edge_listen"],),
                ex_edge_admin=config["edge_admin"],
            )
            with contextlib.suppress(Exception):
                lxd_cleanup(provider, "production")


@pytest.mark.docker
@pytest.mark.lxd
@pytest.mark.slow
def test_quickstart_on_lxd_pushes_swaps_backs_up_and_stops(
    lxd_quickstart: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.quickstart.flow import main
    from tests.deploy.conftest import free_port

    lay = lxd_quickstart
    edge = f"127.0.0.1:{free_port()}"
    argv = ["--dir", str(lay.base), "--port", str(free_port()), "--edge", edge]
    argv += ["--edge-admin", f"127.0.0.1:{free_port()}", "--offline"]
    assert main(["--provider", "lxd", *argv]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert yaml.safe_load(lay.config.read_text())["provider"] == "lxd"
    created = re.findall(r"  (\w+): success create ", out)
    assert sorted(created) == ["blog", "cloud", "www"], out
    assert re.search(r"  www: success replace ", out), out  # the second push swapped www
    assert "example.org shows the change after the swap" in out, out
    # where each instance answers: its own address on the project's bridge
    addresses = re.findall(r"production/(\w+): sy-production-\S+ at http://([0-9.]+):80/", out)
    assert {name for name, _ in addresses} == {"blog", "cloud", "www"}, out
    assert all(address.startswith("10.214.") for _, address in addresses), addresses
    assert re.search(r"backup +succeeded .* snapshot [0-9a-f]{8}", out), out
    assert re.search(r"done in \d+ s: (\d+)/\1 URLs answer", out), out

    assert main(["--stop", "--dir", str(lay.base)]) == 0
    stopped = capsys.readouterr().out
    assert len(re.findall(r"destroyed sy-production-", stopped)) == 3, stopped
    from service.quickstart.flow import _provider

    assert _provider(lay).list_instances() == []
