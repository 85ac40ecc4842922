"""A push built to hurt, against a live instance: refused in seconds, nothing deployed is
touched, and the next push deploys for real (Docker engine, local provider, edge Caddy)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_push_to_live import NOTES_CONFIG, TOKEN, World, world
from tests.service.test_hostile_push import alias_bomb

__all__ = ["world"]  # the fixture, shared with test_push_to_live
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_an_alias_bomb_leaves_the_live_instance_alone_and_the_next_push_deploys(
    world: World,
) -> None:
    from service.quickstart.steps import wait_for_push

    sha, _ = world.push()
    [first] = wait_for_push(world.url, TOKEN, sha, timeout=120)
    assert (first["status"], first["action"]) == ("success", "create"), first
    [live] = world.provider.list_instances()

    world.commit("bomb", {"instances/notes/apps.config": NOTES_CONFIG + alias_bomb()})
    bomb, _ = world.push()
    started = time.monotonic()
    [refused] = wait_for_push(world.url, TOKEN, bomb, timeout=60)
    assert time.monotonic() - started < 60
    assert (refused["status"], refused["action"]) == ("failure", "invalid"), refused
    assert "max_yaml_nodes" in refused["summary"] or "YAML nodes" in refused["summary"]
    assert [i.id for i in world.provider.list_instances()] == [live.id]  # untouched
    assert "hello site v1" in world.get("site.test").text

    world.commit(
        "fixed",
        {
            "instances/notes/apps.config": NOTES_CONFIG,
            "instances/notes/files/site/index.html": "<h1>v2</h1>\n",
        },
    )
    fixed, _ = world.push()
    [done] = wait_for_push(world.url, TOKEN, fixed, timeout=120)
    assert (done["status"], done["action"]) == ("success", "replace"), done
    assert "v2" in world.get("site.test").text
