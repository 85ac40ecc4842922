"""The `memory` provider: instances, volumes and routes held in one process, for fast tests
of the engines (see deploy.providers.memory.provider)."""
