"""The swapyard service: what runs around the pipeline, one package per concern.

- `service.web`: the Flask app (`service.web.app.create_app`), the JSON API, the pages, the
  HTTP server.
- `service.worker`: the worker: the intake loop, the deployment runner, the loops that
  catch missed pushes and elect the schedule leader, the backups in the service.
- `service.forge`: talking back to the forges: commit statuses through an outbox, and each
  forge's client.
- `service.store`: the database: engine, models, migrations, the durable inbox, leases.
- `service.cli`: the `swapyard` command line; offline commands (`validate`, `render`, `plan`,
  `schema`) import nothing of Flask.
- `service.quickstart`: the whole flow on one machine, with a local forge (a git hook).
- `service.settings` and `service.secrets`: what every part is configured with.

Importing this package opens nothing and imports no third-party module.
"""
