"""Fixtures for renderer tests."""

from __future__ import annotations

import pytest

from schemas.model import Instance
from tests.renderers.helpers import example_instances


@pytest.fixture(scope="session")
def examples() -> tuple[Instance, ...]:
    return example_instances()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "instance" in metafunc.fixturenames:
        instances = example_instances()
        metafunc.parametrize("instance", instances, ids=[i.key for i in instances])
