"""The `local` provider: one machine with a Docker engine (see deploy.providers.local.provider)."""
