"""Jinja filters that turn stored values into what a person reads on the pages.

The database and the JSON API keep machine values (Unix times, ISO stamps with
microseconds, seconds as floats, byte counts, full commit ids); the pages show
them as a reader wants them: a time with how long ago it was, a duration in
human units, a size in binary units, a commit as a short id linked to the
forge's commit page. Each filter is a plain function (tested alone) and
`init_app` registers them all on the Flask app.

Times are rendered in UTC on the server, inside `<time datetime=...>`; a few
lines of script in base.html rewrite the absolute part into the reader's own
time zone, so the page is complete and correct without JavaScript.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from markupsafe import Markup

NONE = "—"
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_SCP = re.compile(r"^[A-Za-z0-9._-]+@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")  # owner, group and repository names
# forges whose commit page is <web base>/<owner>/<repo>/commit/<sha>
_PLAIN_COMMIT = {"github", "gitea", "forgejo"}


def to_datetime(value: float | int | str | dt.datetime | None) -> dt.datetime | None:
    """A timezone-aware UTC datetime from a Unix time, an ISO 8601 string or a datetime
    (a naive one is taken as UTC, as the journals store them); None when there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if unit in ("s", "min", "h") else f"{n} {unit}{'' if n == 1 else 's'}"


def relative(moment: dt.datetime, now: dt.datetime) -> str:
    """How far `moment` is from `now` in words: "just now", "3 min ago", "in 2 h"."""
    delta = (now - moment).total_seconds()
    gap = abs(delta)
    if gap < 5:
        return "just now"
    if gap < 60:
        amount = _count(int(gap), "s")
    elif gap < 3600:
        amount = _count(int(gap // 60), "min")
    elif gap < 86400:
        amount = _count(int(gap // 3600), "h")
    else:
        amount = _count(int(gap // 86400), "day")
    return f"{amount} ago" if delta > 0 else f"in {amount}"


def when(
    value: float | int | str | dt.datetime | None, now: float | dt.datetime | None = None
) -> Markup:
    """A `<time>` element: UTC to the minute plus how long ago, e.g.
    "2026-12-01 20:51 UTC · 3 min ago", with the exact second in its title; "—" for None.

    `now` (for tests) defaults to the time of rendering."""
    moment = to_datetime(value)
    if moment is None:
        return Markup(NONE)
    reference = to_datetime(time.time() if now is None else now)
    assert reference is not None
    machine = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{}" title="{}"><span class="abs">{}</span> · {}</time>').format(
        machine,
        moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        moment.strftime("%Y-%m-%d %H:%M UTC"),
        relative(moment, reference),
    )


def duration(seconds: float | int | None) -> str:
    """Seconds in human units: "0.4 s", "15.9 s", "3 min 4 s", "2 h 5 min", "3 d 4 h";
    "—" for None."""
    if seconds is None:
        return NONE
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def size(count: int | float | None) -> str:
    """A byte count in binary units: "512 B", "1.2 MiB"; "—" for None."""
    if count is None:
        return NONE
    value = float(count)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def web_base(clone_url: str | None) -> str | None:
    """The repository's web address from its clone URL (https, or ssh in either form:
    `git@host:owner/repo.git`, `ssh://git@host/owner/repo.git`), without credentials,
    port of ssh or `.git`; None for anything else (a local path, file://, git://) and
    for a path with characters no forge allows in a name."""
    if not clone_url:
        return None
    url = clone_url.strip()
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        scheme, path = parts.scheme, parts.path
    elif parts.scheme == "ssh":
        netloc, scheme, path = parts.hostname or "", "https", parts.path
    elif "://" not in url and (scp := _SCP.match(url)):
        netloc, scheme, path = scp["host"], "https", "/" + scp["path"]
    else:
        return None
    path = path.rstrip("/").removesuffix(".git")
    segments = [s for s in path.split("/") if s]
    if not netloc or len(segments) < 2:
        return None
    if any(s in (".", "..") or not _SEGMENT.match(s) for s in segments):
        return None
    return f"{scheme}://{netloc}/" + "/".join(segments)


def commit_url(sha: str | None, clone_url: str | None, forge: str | None) -> str | None:
    """The forge's web page of commit `sha`, or None when it cannot be told where it is."""
    base = web_base(clone_url)
    if base is None or not sha or not _SHA.match(sha) or not sha.strip("0"):
        return None  # the all-zero id of a created or deleted branch is no commit
    if forge == "gitlab":
        return f"{base}/-/commit/{sha}"
    if forge in _PLAIN_COMMIT:
        return f"{base}/commit/{sha}"
    return None


def _field(event: Any, name: str) -> Any:
    if isinstance(event, Mapping):
        return event.get(name)
    return getattr(event, name, None)


def commit(sha: str | None, event: Any = None) -> Markup:
    """A commit as its 12-character id in `<code>` (full id as title), linked to the forge's
    commit page when `event` (a mapping or object with `clone_url` and `forge`) tells where."""
    if not sha:
        return Markup(NONE)
    short = Markup('<code title="{}">{}</code>').format(sha, sha[:12])
    url = commit_url(sha, _field(event, "clone_url"), _field(event, "forge"))
    if url is None:
        return short
    return Markup('<a href="{}" class="commit">{}</a>').format(url, short)


FILTERS = {"when": when, "duration": duration, "size": size, "commit": commit}


def init_app(app: Flask) -> None:
    """Register the filters on `app`'s Jinja environment."""
    app.jinja_env.filters.update(FILTERS)
