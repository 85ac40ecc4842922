"""A stand-in for the Hetzner Cloud API's DNS part, for tests: a real HTTP server on loopback.

This machine cannot reach Hetzner, so the tests talk to this instead. It is
built from the API's documented request and response shapes (docs.hetzner.cloud,
reference "Zones", "Zone RRSets", "Zone RRSet Actions", "Actions", and the
"Errors" and "Rate Limiting" sections), not from recordings, and implements
only what the hetzner driver uses:

Paths below the base URL `/v1`:

- `GET  /zones?name=...`                                       list zones
- `GET  /zones/{id_or_name}/rrsets?name=&type=&page=&per_page=` list RRSets
- `POST /zones/{id_or_name}/rrsets`                            create an RRSet
- `DELETE /zones/{id_or_name}/rrsets/{name}/{type}`            delete an RRSet
- `POST /zones/{id_or_name}/rrsets/{name}/{type}/actions/set_records`
- `POST /zones/{id_or_name}/rrsets/{name}/{type}/actions/change_ttl`
- `GET  /actions/{id}`                                         an action's progress

As documented: a Bearer token is required (401 `unauthorized` without one or
with an unknown one; 403 `token_readonly` for a read-only token writing);
errors are `{"error": {"code", "message", "details"}}`; a malformed body is 400
`json_error`, invalid fields 422 `invalid_input` with `details.fields`; an
unknown zone or RRSet 404 `not_found`; creating an RRSet that exists 409
`uniqueness_error`; writing to a secondary zone 422 `incorrect_zone_mode`;
every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and
`RateLimit-Reset`, and a throttled request gets 429 `rate_limit_exceeded`.
Writes answer 201 with an action that is `running` until it has been polled
once, then `success`.

For the tests it also keeps `history`: a snapshot of every zone's RRSets
after each change, so a test can check what the zone looked like in between,
and runs `interleave` (once) just before serving the next write, so a test can
have another party change the zone between the driver's read and its write.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.serving import make_server

RRSET_TYPES = {
    "A",
    "AAAA",
    "CAA",
    "CNAME",
    "DS",
    "HINFO",
    "HTTPS",
    "MX",
    "NS",
    "PTR",
    "RP",
    "SOA",
    "SRV",
    "SVCB",
    "TLSA",
    "TXT",
}
RATE_LIMIT = 3600


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def invalid(field_name: str, problem: str) -> ApiError:
    return ApiError(
        422,
        "invalid_input",
        f"invalid input in field '{field_name}'",
        {"fields": [{"name": field_name, "messages": [problem]}]},
    )


@dataclass
class Zone:
    id: int
    name: str
    mode: str = "primary"
    ttl: int = 3600
    rrsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created": "2025-10-01T12:00:00+00:00",
            "mode": self.mode,
            "ttl": self.ttl,
            "labels": {},
            "protection": {"delete": False},
            "status": "ok",
            "record_count": sum(len(r["records"]) for r in self.rrsets.values()),
            "registrar": "other",
            "primary_nameservers": [],
            "authoritative_nameservers": {
                "assigned": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."],
                "delegated": [],
                "delegation_last_check": None,
                "delegation_status": "unknown",
            },
        }


class HetznerStandIn:
    """The stand-in's state and its Flask app; `serve()` runs it on a free loopback port."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.readonly_token = secrets.token_hex(16)
        self.zones: dict[int, Zone] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.history: list[dict[str, dict[tuple[str, str], list[str]]]] = []
        self.requests: list[tuple[str, str]] = []
        self.throttle_next = 0  # answer the next N requests with 429
        # run once just before the next write is served: another party acting meanwhile
        self.interleave: Callable[[HetznerStandIn], None] | None = None
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self.app = self._build()

    # --- test controls ----------------------------------------------------------

    def add_zone(self, name: str, mode: str = "primary", ttl: int = 3600) -> Zone:
        with self._lock:
            zone = Zone(id=next(self._ids), name=name, mode=mode, ttl=ttl)
            self.zones[zone.id] = zone
            soa = f"hydrogen.ns.hetzner.com. dns.hetzner.com. 2025100100 86400 10800 3600000 {ttl}"
            self._store(zone, "@", "SOA", None, [soa])
            self._store(
                zone, "@", "NS", None, ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."]
            )
            return zone

    def put_direct(self, zone_name: str, name: str, rtype: str, values: list[str]) -> None:
        """Set an RRSet straight in the state (for `interleave`, which runs under the lock)."""
        zone = self._zone(zone_name)
        self._store(zone, name, rtype, 300, values)

    def remove_direct(self, zone_name: str, name: str | None = None, rtype: str = "A") -> None:
        """Remove an RRSet, or with no `name` the whole zone, straight from the state."""
        zone = self._zone(zone_name)
        if name is None:
            del self.zones[zone.id]
        else:
            zone.rrsets.pop((name, rtype), None)
        self._snapshot()

    def states_of(self, zone: str, name: str) -> list[list[str]]:
        """Every recorded state's A and AAAA values at `name` (relative) in `zone`, in order."""
        return [
            sorted(snap.get(zone, {}).get((name, "A"), []))
            + sorted(snap.get(zone, {}).get((name, "AAAA"), []))
            for snap in self.history
        ]

    # --- state --------------------------------------------------------------------

    def _snapshot(self) -> None:
        self.history.append(
            {
                z.name: {key: [r["value"] for r in rr["records"]] for key, rr in z.rrsets.items()}
                for z in self.zones.values()
            }
        )

    def _store(
        self, zone: Zone, name: str, rtype: str, ttl: int | None, values: list[str]
    ) -> dict[str, Any]:
        rrset = {
            "id": f"{name}/{rtype}",
            "name": name,
            "type": rtype,
            "ttl": ttl,
            "labels": {},
            "protection": {"change": False},
            "records": [{"value": v, "comment": None} for v in values],
            "zone": zone.id,
        }
        zone.rrsets[(name, rtype)] = rrset
        self._snapshot()
        return rrset

    def _action(self, command: str, zone: Zone) -> dict[str, Any]:
        action = {
            "id": next(self._ids),
            "command": command,
            "status": "running",
            "progress": 0,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "finished": None,
            "resources": [{"id": zone.id, "type": "zone"}],
            "error": None,
        }
        self.actions[action["id"]] = action
        return dict(action)

    # --- validation ---------------------------------------------------------------

    def _zone(self, id_or_name: str) -> Zone:
        for zone in self.zones.values():
            if str(zone.id) == id_or_name or zone.name == id_or_name:
                return zone
        raise ApiError(404, "not_found", "zone not found")

    @staticmethod
    def _primary(zone: Zone) -> None:
        if zone.mode != "primary":
            raise ApiError(
                422, "incorrect_zone_mode", "This operation is not supported for this Zone's mode."
            )

    @staticmethod
    def _body() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "json_error", "invalid JSON in request body")
        return body

    @staticmethod
    def _name(zone: Zone, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise invalid("name", "is required")
        qualified = name == zone.name or name.endswith("." + zone.name)
        if name != name.lower() or name.endswith(".") or qualified:
            raise invalid(
                "name", "must be lower case, relative to the zone, without a trailing dot"
            )
        return name

    @staticmethod
    def _ttl(ttl: Any) -> int | None:
        if ttl is None:
            return None
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= 2147483647:
            raise invalid("ttl", "must be an integer between 60 and 2147483647")
        return ttl

    @staticmethod
    def _records(rtype: str, records: Any) -> list[str]:
        if not isinstance(records, list) or not records:
            raise invalid("records", "must be a non-empty list")
        values = []
        for record in records:
            value = record.get("value") if isinstance(record, dict) else None
            if not isinstance(value, str) or not value:
                raise invalid("records", "each record needs a value")
            if rtype in ("A", "AAAA"):
                try:
                    address = ipaddress.ip_address(value)
                except ValueError:
                    raise invalid("records", f"{value!r} is not a valid {rtype} value") from None
                if (rtype == "A") != (address.version == 4):
                    raise invalid("records", f"{value!r} is not a valid {rtype} value")
            if rtype == "TXT" and not _quoted_strings(value):
                raise invalid(
                    "records",
                    "TXT values must be one or more quoted strings of at most 255 characters",
                )
            values.append(value)
        if len(set(values)) != len(values):
            raise invalid("records", "must not contain duplicates")
        return values

    # --- the app ------------------------------------------------------------------

    def _build(self) -> Flask:
        app = Flask("hetzner_standin")
        api = Blueprint("v1", "hetzner_standin", url_prefix="/v1")
        standin = self

        @app.before_request
        def gate() -> Any:
            standin.requests.append((request.method, request.path))
            if standin.throttle_next > 0:
                standin.throttle_next -= 1
                raise ApiError(
                    429, "rate_limit_exceeded", f"limit of {RATE_LIMIT} requests per hour reached"
                )
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
            if token not in (standin.token, standin.readonly_token):
                raise ApiError(401, "unauthorized", "unable to authenticate")
            if request.method != "GET" and token == standin.readonly_token:
                raise ApiError(403, "token_readonly", "The token is read-only.")
            if request.method != "GET" and standin.interleave is not None:
                meanwhile, standin.interleave = standin.interleave, None
                with standin._lock:
                    meanwhile(standin)
            return None

        @app.after_request
        def rate_headers(resp: Response) -> Response:
            throttled = resp.status_code == 429
            resp.headers["RateLimit-Limit"] = str(RATE_LIMIT)
            resp.headers["RateLimit-Remaining"] = "0" if throttled else str(RATE_LIMIT - 1)
            resp.headers["RateLimit-Reset"] = str(int(time.time()) + 1)
            return resp

        @app.errorhandler(ApiError)
        def api_error(exc: ApiError) -> tuple[Response, int]:
            body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
            return jsonify(body), exc.status

        @app.errorhandler(404)
        def no_route(_exc: Exception) -> tuple[Response, int]:
            return api_error(ApiError(404, "not_found", "resource not found"))

        @api.get("/zones")
        def list_zones() -> Any:
            with standin._lock:
                name = request.args.get("name")
                zones = [z.describe() for z in standin.zones.values() if name in (None, z.name)]
                return {"zones": zones, "meta": _meta(1, 25, len(zones))}

        @api.get("/zones/<id_or_name>/rrsets")
        def list_rrsets(id_or_name: str) -> Any:
            with standin._lock:
                zone = standin._zone(id_or_name)
                name = request.args.get("name")
                types = request.args.getlist("type")
                page = int(request.args.get("page", 1))
                per_page = min(int(request.args.get("per_page", 25)), 100)
                found = [
                    dict(rr)
                    for (rname, rtype), rr in sorted(zone.rrsets.items())
                    if name in (None, rname) and (not types or rtype in types)
                ]
                chunk = found[(page - 1) * per_page : page * per_page]
                return {"rrsets": chunk, "meta": _meta(page, per_page, len(found))}

        @api.post("/zones/<id_or_name>/rrsets")
        def create_rrset(id_or_name: str) -> Any:
            with standin._lock:
                zone = standin._zone(id_or_name)
                standin._primary(zone)
                body = standin._body()
                rtype = body.get("type")
                if rtype not in RRSET_TYPES:
                    raise invalid("type", f"must be one of {', '.join(sorted(RRSET_TYPES))}")
                name = standin._name(zone, body.get("name"))
                ttl = standin._ttl(body.get("ttl"))
                values = standin._records(rtype, body.get("records"))
                if (name, rtype) in zone.rrsets:
                    raise ApiError(409, "uniqueness_error", "RRSet with this name and type exists")
                rrset = standin._store(zone, name, rtype, ttl, values)
                return {"rrset": rrset, "action": standin._action("create_rrset", zone)}, 201

        @api.delete("/zones/<id_or_name>/rrsets/<name>/<rtype>")
        def delete_rrset(id_or_name: str, name: str, rtype: str) -> Any:
            with standin._lock:
                zone = standin._zone(id_or_name)
                standin._primary(zone)
                if zone.rrsets.pop((name, rtype), None) is None:
                    raise ApiError(404, "not_found", "rrset not found")
                standin._snapshot()
                return {"action": standin._action("delete_rrset", zone)}, 201

        @api.post("/zones/<id_or_name>/rrsets/<name>/<rtype>/actions/set_records")
        def set_records(id_or_name: str, name: str, rtype: str) -> Any:
            with standin._lock:
                zone = standin._zone(id_or_name)
                standin._primary(zone)
                old = zone.rrsets.get((name, rtype))
                if old is None:
                    raise ApiError(404, "not_found", "rrset not found")
                values = standin._records(rtype, standin._body().get("records"))
                standin._store(zone, name, rtype, old["ttl"], values)
                return {"action": standin._action("set_rrset_records", zone)}, 201

        @api.post("/zones/<id_or_name>/rrsets/<name>/<rtype>/actions/change_ttl")
        def change_ttl(id_or_name: str, name: str, rtype: str) -> Any:
            with standin._lock:
                zone = standin._zone(id_or_name)
                standin._primary(zone)
                old = zone.rrsets.get((name, rtype))
                if old is None:
                    raise ApiError(404, "not_found", "rrset not found")
                body = standin._body()
                if "ttl" not in body:
                    raise invalid("ttl", "is required")
                ttl = standin._ttl(body["ttl"])
                values = [r["value"] for r in old["records"]]
                standin._store(zone, name, rtype, ttl, values)
                return {"action": standin._action("change_rrset_ttl", zone)}, 201

        @api.get("/actions/<int:action_id>")
        def get_action(action_id: int) -> Any:
            with standin._lock:
                action = standin.actions.get(action_id)
                if action is None:
                    raise ApiError(404, "not_found", "action not found")
                answer = dict(action)
                if action["status"] == "running":  # done once someone has looked
                    action.update(status="success", progress=100, finished=action["started"])
                return {"action": answer}

        app.register_blueprint(api)
        return app

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Run on a free loopback port in a thread; yields the base URL; stops after."""
        quiet = logging.getLogger("werkzeug")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # one log line per request drowns a failing test's output
        server = make_server("127.0.0.1", 0, self.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="hetzner-standin", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/v1"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
            quiet.setLevel(level)


def _meta(page: int, per_page: int, total: int) -> dict[str, Any]:
    last = max(1, -(-total // per_page))
    return {
        "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": total,
        }
    }


def _quoted_strings(value: str) -> bool:
    """True when `value` is one or more quoted strings, each at most 255 bytes unescaped."""
    strings: list[bytearray] = []
    i, inside = 0, False
    while i < len(value):
        c = value[i]
        if inside:
            if c == "\\" and i + 1 < len(value):
                strings[-1] += value[i + 1].encode()
                i += 2
                continue
            if c == '"':
                inside = False
            else:
                strings[-1] += c.encode()
        elif c == '"':
            inside = True
            strings.append(bytearray())
        elif not c.isspace():
            return False
        i += 1
    return bool(strings) and not inside and all(len(s) <= 255 for s in strings)
