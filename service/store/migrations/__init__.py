"""The Alembic environment of the service's database (env.py, versions/), run by
service.store.migrate."""
