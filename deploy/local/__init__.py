"""The `local` provider: one machine with a Docker engine (see deploy.local.provider)."""

from deploy.local.provider import LocalProvider

__all__ = ["LocalProvider"]
