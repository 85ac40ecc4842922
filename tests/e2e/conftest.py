"""Fixtures of the end-to-end tests: the lxd provider's daemon and base image, for the lxd flow."""

from tests.deploy.conftest import base_image, lxd_client  # noqa: F401
