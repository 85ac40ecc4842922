"""The test engine behind mutual TLS (tests/deploy/providers/remote/engines.py)."""

from tests.deploy.providers.remote.engines import tls_engine  # noqa: F401
