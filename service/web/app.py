"""The swapyard service: webhook inbox, worker, statuses, history API.

`create_app(config=None)` builds the Flask app from defaults, the YAML file
named by `SWAPYARD_CONFIG`, `SWAPYARD_*` variables and then `config` (a
mapping of overrides). The typed `Settings` are built once and kept on the
app (`service.settings.settings_of(app)`); Flask's own keys are set from
them, and every part of the service is handed the same object. Nothing
opens a socket or starts a thread here: `swapyard serve` and `swapyard worker`
start the worker (`service.worker.threads.get_worker(app).start()`).

This is where the service's parts meet: the worker and its parts are built
in one place (service.worker.build) and the inbox is handed the worker's
doorbell, so a delivery wakes idle threads at once. The app keeps the worker
and the backups (`get_worker`, `get_backups`) for the commands and pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from schemas.errors import SwapyardError


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    from handlers.intake import endpoint as hooks
    from service.forge import statuses
    from service.settings import KEY, load_settings
    from service.store import db
    from service.web import api, pages
    from service.worker import backups, threads
    from service.worker.build import build_worker
    from service.worker.inbox import SqlInbox

    settings = load_settings(config)
    app = Flask(__name__)
    app.extensions[KEY] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    database = db.init_app(app, settings.database_url)
    worker = build_worker(database, settings)
    app.extensions[threads.KEY], app.extensions[backups.KEY] = worker, worker.backups
    inbox = SqlInbox(
        database,
        settings.public_url,
        statuses.sending_forges(settings),
        on_queued=worker.wake,  # a delivery wakes idle threads
    )
    hooks.init_app(
        app,
        inbox,
        hooks.Reception(settings.max_body_bytes, settings.webhook_secret, settings.repositories),
    )
    api.init_app(app)
    pages.init_app(app)

    @app.errorhandler(SwapyardError)
    def _domain_error(exc: SwapyardError) -> ResponseReturnValue:
        return jsonify({"error": str(exc)}), 400

    @app.get("/healthz")
    def _health() -> ResponseReturnValue:
        return jsonify({"status": "ok"})

    return app
