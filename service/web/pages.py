"""Server-rendered HTML pages: instances, deployments per instance, one push, one deployment.

Behind the same token as the API: `/login` takes it once and keeps a signed
session cookie; the session key is derived from the token, so changing the
token logs everybody out.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from handlers.gitops.pipeline import DeploymentStatus, StepStatus
from handlers.intake.events import EventStatus
from service.settings import settings_of
from service.store.db import get_db
from service.store.models import Deployment, Event, Step
from service.web import charts, freshness, timeline
from service.web import format as formats
from service.web.api import (
    count_instances,
    deployment_json,
    event_json,
    iso,
    latest_per_instance,
)

bp = Blueprint("pages", __name__, template_folder="templates")
PUBLIC = {"pages.login", "static"}
INSTANCES_PER_PAGE = 200
DEPLOYMENTS_PER_PAGE = 50


@bp.context_processor
def _states() -> dict[str, Any]:
    """The state enums, so that templates compare with them rather than with literals."""
    return {
        "DeploymentStatus": DeploymentStatus,
        "EventStatus": EventStatus,
        "StepStatus": StepStatus,
    }


@bp.before_app_request
def _require_login() -> ResponseReturnValue | None:
    if request.blueprint != "pages" or request.endpoint in PUBLIC:
        return None
    token = settings_of(current_app).api_token
    if token and session.get("token_digest") == _digest(token):
        return None
    return redirect(url_for("pages.login", next=request.full_path))


def _sources(db: Any, event_ids: set[int]) -> dict[int, dict[str, Any]]:
    """Per event id, where its commits live (`clone_url`, `forge`), in one query: the
    commit filter links a commit to its forge with it."""
    if not event_ids:
        return {}
    rows = db.execute(
        select(Event.id, Event.clone_url, Event.forge).where(Event.id.in_(event_ids))
    ).all()
    return {i: {"clone_url": url, "forge": forge} for i, url, forge in rows}


def _digest(token: str) -> str:
    return hashlib.sha256(f"swapyard-login:{token}".encode()).hexdigest()


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    token = settings_of(current_app).api_token
    error = None if token else "Pages are closed: set SWAPYARD_API_TOKEN to open them."
    if request.method == "POST" and token:
        given = request.form.get("token", "")
        if hmac.compare_digest(given.encode(), str(token).encode()):
            session["token_digest"] = _digest(token)
            target = request.args.get("next") or "/"
            return redirect(
                target if target.startswith("/") and not target.startswith("//") else "/"
            )
        error = "Wrong token."
    return render_template("login.html", error=error), 401 if error else 200


def _page_arg(name: str) -> int | None:
    """A positive integer query argument (`page`, `before`, `after`), or None."""
    try:
        value = int(request.args.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


@bp.get("/")
def instances() -> ResponseReturnValue:
    page = _page_arg("page") or 1
    with get_db().session() as db:
        total = count_instances(db)
        pairs = latest_per_instance(
            db, limit=INSTANCES_PER_PAGE, offset=(page - 1) * INSTANCES_PER_PAGE
        )
        sources = _sources(db, {d.event_id for pair in pairs for d in pair if d is not None})
        found = [
            {
                "key": last.key,
                "current": deployment_json(ok) if ok else None,
                "current_source": sources.get(ok.event_id) if ok else None,
                "latest": deployment_json(last),
                "latest_source": sources.get(last.event_id),
            }
            for last, ok in pairs
        ]
    from service.worker.backups import get_backups

    backups = get_backups(current_app)
    schedule = backups.schedule_holder() if backups is not None else None
    fresh = freshness.of_all(backups) if backups is not None else {}
    pages = max(1, -(-total // INSTANCES_PER_PAGE))
    return render_template(
        "instances.html",
        instances=found,
        backups_on=backups is not None,
        schedule=schedule,
        freshness=fresh,
        page=page,
        pages=pages,
    )


@bp.get("/instances/<project>/<name>")
def instance(project: str, name: str) -> ResponseReturnValue:
    key = f"{project}/{name}"
    before, after = _page_arg("before"), _page_arg("after")
    with get_db().session() as db:
        query = select(Deployment).where(Deployment.key == key)
        if after is not None:  # the newer page: the next ones up, then newest first
            query = query.where(Deployment.id > after).order_by(Deployment.id)
        else:
            if before is not None:
                query = query.where(Deployment.id < before)
            query = query.order_by(Deployment.id.desc())
        deps = list(db.scalars(query.limit(DEPLOYMENTS_PER_PAGE + 1)))
        more = len(deps) > DEPLOYMENTS_PER_PAGE
        deps = deps[:DEPLOYMENTS_PER_PAGE]
        if after is not None:
            deps.reverse()
        sources = _sources(db, {d.event_id for d in deps})
        rows = [{**deployment_json(d), "source": sources.get(d.event_id)} for d in deps]
        steps: dict[int, list[Step]] = {d.id: [] for d in deps}
        for step in db.scalars(select(Step).where(Step.deployment_id.in_(steps)).order_by(Step.id)):
            steps[step.deployment_id].append(step)
        exists = bool(rows) or db.scalar(select(Deployment.id).where(Deployment.key == key))
    if not exists:
        return render_template("missing.html", what=f"instance {key}"), 404
    for row in rows:
        windows = timeline.build(steps[row["id"]]).windows
        row["window"] = sum(w.seconds for w in windows) if windows else None
    older = rows[-1]["id"] if rows and (more or after is not None) else None
    newer = rows[0]["id"] if rows and (before is not None or (after is not None and more)) else None
    swap_windows = [
        charts.Point(f"deployment {r['id']}", r["window"])
        for r in reversed(rows)
        if r["window"] is not None
    ]
    window_chart = charts.bars(
        swap_windows,
        f"{key}: seconds of maintenance page (503) per swap",
        "swap-windows",
        charts.seconds,
    )
    from service.worker.backups import get_backups

    backups = get_backups(current_app)
    overview = backups.overview(project, name) if backups is not None else None
    extra: dict[str, Any] = {}
    if backups is not None and overview is not None:
        made = [r for r in overview["runs"] if r["kind"] == "backup"][::-1]
        extra = {
            "backup_window_chart": charts.bars(
                [charts.Point(f"backup {r['id']}", r["window"]) for r in made],
                f"{key}: seconds of maintenance page per backup",
                "backup-windows",
                charts.seconds,
            ),
            "backup_size_chart": charts.bars(
                [charts.Point(f"backup {r['id']}", r["bytes"]) for r in made],
                f"{key}: size of each backup",
                "backup-sizes",
                charts.size,
            ),
            "backups_made": len(made),
            "drill": next((r for r in overview["runs"] if r["kind"] == "drill"), None),
            "fresh": freshness.of_all(backups, only=key).get(key),
        }
    return render_template(
        "instance.html",
        key=key,
        deployments=rows,
        backups=overview,
        window_chart=window_chart if swap_windows else None,
        older=older,
        newer=newer,
        **extra,
    )


@bp.get("/deployments/<int:deployment_id>")
def deployment(deployment_id: int) -> ResponseReturnValue:
    with get_db().session() as db:
        d = db.get(Deployment, deployment_id)
        if d is None:
            return render_template("missing.html", what=f"deployment {deployment_id}"), 404
        data = deployment_json(d, full=True)
        # steps of an attempt that a restart interrupted came before this run's start
        drawn = timeline.build(d.steps)
        for step, bar in zip(data["steps"], drawn.bars, strict=True):
            step["offset"] = round(bar.offset, 3)
            step["seconds"] = round(bar.seconds, 3)
        chart = timeline.svg(drawn, f"Deployment {d.id}: its steps on a time axis")
        event = {
            "id": d.event.id,
            "ref": d.event.ref,
            "clone_url": d.event.clone_url,
            "forge": d.event.forge,
            "received_at": iso(d.event.received_at),
        }
    return render_template("deployment.html", d=data, event=event, timeline=drawn, chart=chart)


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> ResponseReturnValue:
    """One delivery: what it was, what became of it, and its deployments (the target of
    the push-wide `swapyard` commit status)."""
    with get_db().session() as db:
        e = db.get(Event, event_id)
        if e is None:
            return render_template("missing.html", what=f"event {event_id}"), 404
        data = {**event_json(e), "clone_url": e.clone_url}
        deployments = [deployment_json(d) for d in sorted(e.deployments, key=lambda d: d.id)]
    return render_template("event.html", e=data, deployments=deployments)


def init_app(app: Flask) -> None:
    token = settings_of(app).api_token or ""
    app.secret_key = hashlib.sha256(f"swapyard-session:{token}".encode()).hexdigest()
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.register_blueprint(bp)
    formats.init_app(app)
