"""Fixtures of the quick start's tests: the lxd provider's daemon and base image."""

from tests.deploy.conftest import base_image, lxd_client  # noqa: F401
