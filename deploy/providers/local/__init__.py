"""The `local` provider: one machine with a Docker engine (see deploy.providers.local.provider)."""

from deploy.providers.local.provider import LocalProvider

__all__ = ["LocalProvider"]
