"""Alembic's entry point for every command that touches the database.

service.store.migrate hands it an open connection, already in a transaction that
holds the migration lock (`config.attributes["connection"]`). Autogenerate
compares the database with all three table sets: the service's models and
the swap and backup journals. SQLite cannot ALTER most things, so there
migrations run in batch mode (copy the table, change it, move it back).
"""

from __future__ import annotations

from alembic import context

from service.store.migrate import TARGET_METADATA, include_name

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through swapyard (`swapyard db upgrade`), not the alembic command: "
        "it takes the migration lock and checks databases made before migrations"
    )
context.configure(
    connection=connection,
    target_metadata=TARGET_METADATA,
    include_name=include_name,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
