"""JSON API (`/api/...`) behind a bearer token, and Prometheus metrics at `/metrics`."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from handlers.gitops.pipeline import DeploymentStatus
from handlers.intake.events import EventStatus
from service.settings import settings_of
from service.store.db import get_db
from service.store.models import Deployment, Event, StatusOutbox

bp = Blueprint("api", __name__, url_prefix="/api")


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


@bp.before_request
def _require_token() -> ResponseReturnValue | None:
    token = settings_of(current_app).api_token
    if not token:
        return jsonify({"error": "the API is closed: set SWAPYARD_API_TOKEN to open it"}), 403
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(
        given[len("Bearer ") :].encode(), str(token).encode()
    ):
        return jsonify({"error": "missing or wrong token: send Authorization: Bearer <token>"}), 401
    return None


def event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "forge": e.forge,
        "event": e.event_name,
        "kind": e.kind,
        "delivery": e.delivery_id,
        "status": e.status,
        "reason": e.reason,
        "repository": e.repository,
        "ref": e.ref,
        "before": e.before,
        "after": e.after,
        "received_at": iso(e.received_at),
        "processed_at": iso(e.processed_at),
        "attempts": e.attempts,
    }


def deployment_json(d: Deployment, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "event": d.event_id,
        "project": d.project,
        "instance": d.instance,
        "context": d.context,
        "mode": d.mode,
        "sha": d.sha,
        "status": d.status,
        "action": d.action,
        "summary": d.summary,
        "digest": d.digest,
        "created_at": iso(d.created_at),
        "started_at": iso(d.started_at),
        "finished_at": iso(d.finished_at),
        "seconds": round(d.finished_at - d.started_at, 3)
        if d.finished_at is not None and d.started_at is not None
        else None,
    }
    if full:
        out["log"] = d.log
        out["recoveries"] = d.recoveries
        out["steps"] = [
            {
                "name": s.name,
                "status": s.status,
                "started_at": iso(s.started_at),
                "finished_at": iso(s.finished_at),
                "log": s.log,
            }
            for s in d.steps
        ]
    return out


def _limit() -> int:
    try:
        return max(1, min(int(request.args.get("limit", 50)), 500))
    except ValueError:
        abort(400, "limit must be a number")


@bp.get("/events")
def events() -> ResponseReturnValue:
    query = select(Event).order_by(Event.id.desc()).limit(_limit())
    if status := request.args.get("status"):
        query = query.where(Event.status == status)
    with get_db().session() as session:
        return jsonify([event_json(e) for e in session.scalars(query)])


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> ResponseReturnValue:
    with get_db().session() as session:
        e = session.get(Event, event_id)
        if e is None:
            return jsonify({"error": f"no event {event_id}"}), 404
        return jsonify(
            {**event_json(e), "deployments": [deployment_json(d) for d in e.deployments]}
        )


@bp.get("/deployments")
def deployments() -> ResponseReturnValue:
    query = select(Deployment).order_by(Deployment.id.desc()).limit(_limit())
    if instance := request.args.get("instance"):
        query = query.where(Deployment.key == instance)
    with get_db().session() as session:
        return jsonify([deployment_json(d) for d in session.scalars(query)])


@bp.get("/deployments/<int:deployment_id>")
def deployment(deployment_id: int) -> ResponseReturnValue:
    with get_db().session() as session:
        d = session.get(Deployment, deployment_id)
        if d is None:
            return jsonify({"error": f"no deployment {deployment_id}"}), 404
        return jsonify(deployment_json(d, full=True))


def latest_per_instance(
    session: Any, limit: int | None = None, offset: int = 0
) -> list[tuple[Deployment, Deployment | None]]:
    """Per instance key, sorted: its latest deployment and its latest successful one.

    Two grouped `max(id)` queries answered from the `ix_deployments_latest*` indexes,
    then only those rows: the history's length does not matter. `limit` and `offset`
    page through the keys.
    """
    latest_ids = (
        select(func.max(Deployment.id))
        .where(Deployment.mode == "deploy")
        .group_by(Deployment.key)
        .order_by(Deployment.key)
        .offset(offset)
    )
    if limit is not None:
        latest_ids = latest_ids.limit(limit)
    latest = session.scalars(select(Deployment).where(Deployment.id.in_(latest_ids))).all()
    keys = [d.key for d in latest]
    ok_ids = (
        select(func.max(Deployment.id))
        .where(
            Deployment.mode == "deploy",
            Deployment.status == DeploymentStatus.SUCCESS,
            Deployment.key.in_(keys),
        )
        .group_by(Deployment.key)
    )
    current = {
        d.key: d for d in session.scalars(select(Deployment).where(Deployment.id.in_(ok_ids)))
    }
    return [(d, current.get(d.key)) for d in sorted(latest, key=lambda d: d.key)]


def count_instances(session: Any) -> int:
    """How many instance keys have a deployment (for the overview's pages)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Deployment.key))).where(Deployment.mode == "deploy")
        )
        or 0
    )


@bp.get("/instances")
def instances() -> ResponseReturnValue:
    """Each instance key with its latest finished and latest queued deployment."""
    with get_db().session() as session:
        return jsonify(
            [
                {
                    "key": last.key,
                    "project": last.project,
                    "instance": last.instance,
                    "current": {"sha": ok.sha, "deployment": ok.id, "digest": ok.digest}
                    if ok
                    else None,
                    "latest": deployment_json(last),
                }
                for last, ok in latest_per_instance(session)
            ]
        )


@bp.get("/instances/<project>/<name>/backups")
def instance_backups(project: str, name: str) -> ResponseReturnValue:
    from service.worker.backups import get_backups

    backups = get_backups(current_app)
    if backups is None:
        return jsonify({"error": "backups are off in this service (DEPLOY or BACKUPS)"}), 404
    return jsonify(backups.overview(project, name))


def metrics() -> ResponseReturnValue:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        # repr, not :g, whose 6 digits would round a Unix time to the nearest 10,000 s
        lines.extend(f"{name}{labels} {value!r}" for labels, value in samples)

    with get_db().session() as session:
        by_event = session.execute(select(Event.status, func.count()).group_by(Event.status)).all()
        by_dep = session.execute(
            select(
                Deployment.status,
                func.count(),
                func.sum(Deployment.finished_at - Deployment.started_at),
            ).group_by(Deployment.status)
        ).all()
        queued = session.scalar(
            select(func.count()).where(
                Event.status.in_((EventStatus.QUEUED, EventStatus.PROCESSING))
            )
        )
        waiting = session.scalar(
            select(func.count()).where(Deployment.status == DeploymentStatus.WAITING)
        )
        outbox = session.scalar(select(func.count()).where(StatusOutbox.waiting()))
    family(
        "swapyard_events_total",
        "counter",
        "Webhook events stored, by outcome.",
        [(f'{{status="{s}"}}', n) for s, n in by_event],
    )
    family(
        "swapyard_deployments_total",
        "counter",
        "Deployments, by status.",
        [(f'{{status="{s}"}}', n) for s, n, _ in by_dep],
    )
    family(
        "swapyard_deployment_seconds_sum",
        "counter",
        "Total run time of finished deployments.",
        [(f'{{status="{s}"}}', t or 0.0) for s, _, t in by_dep],
    )
    family(
        "swapyard_queue_depth",
        "gauge",
        "Work waiting in the database.",
        [
            ('{queue="events"}', queued or 0),
            ('{queue="deployments"}', waiting or 0),
            ('{queue="statuses"}', outbox or 0),
        ],
    )
    text = "\n".join(lines) + "\n"
    from service.worker.backups import get_backups

    backups = get_backups(current_app)
    if backups is not None:
        from deploy.backup.metrics import prometheus_text

        text += prometheus_text(backups.scheduler.history)
        current = backups.holder()
        lines.clear()
        family(
            "swapyard_schedule_held",
            "gauge",
            "1 while a process holds the schedule lease (runs the backup jobs), else 0.",
            [("", 1 if current else 0)],
        )
        if current is not None:
            process = current.owner.replace("\\", "\\\\").replace('"', '\\"')
            family(
                "swapyard_schedule_holder_since_seconds",
                "gauge",
                "Unix time at which the process named took the schedule lease.",
                [(f'{{process="{process}"}}', current.since or 0.0)],
            )
        text += "\n".join(lines) + "\n"
    return text, 200, {"Content-Type": "text/plain; version=0.0.4"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_url_rule("/metrics", "metrics", metrics)
