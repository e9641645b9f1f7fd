"""Health (public, for load balancers) and status (for operators: pending vs applied,
which instance leads). The Asterisk and phone fields are this instance's view: only the
leader talks to Asterisk (docs/scale-out.md), so ask it, or read /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sipprov import health as db_health
from sipprov.apply import nodestatus, quarantine
from sipprov.apply.leadership import current_leader, instance_id
from sipprov.context import Services
from sipprov.db.sql import agents as agent_sql
from sipprov.http.keys import SERVICES
from sipprov.http.responses import json_response
from sipprov.http.routes import Reply, Route

HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "database"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "database": {"type": "string", "enum": ["ok", "unavailable"]},
        "instance": {"type": "string", "description": "this instance's name"},
        "leader": {"type": "boolean",
                   "description": "this instance runs the applier (docs/scale-out.md)"},
    },
}

INSTANCE_SCHEMA = {
    "type": "object",
    "description": "which sipprov instance answered and which one applies",
    "required": ["id", "leader", "leader_id"],
    "properties": {
        "id": {"type": "string"},
        "leader": {"type": "boolean", "description": "this instance is the applier leader"},
        "leader_since": {"type": ["string", "null"], "format": "date-time"},
        "leader_id": {"type": ["string", "null"],
                      "description": "the instance that holds the lease (null: none now)"},
    },
}

STATUS_SCHEMA = {
    "type": "object",
    "required": ["database", "asterisk", "config"],
    "properties": {
        "database": {"type": "string", "enum": ["ok"]},
        "instance": INSTANCE_SCHEMA,
        "asterisk": {
            "type": "object",
            "required": ["connected", "version"],
            "properties": {
                "connected": {"type": "boolean"},
                "version": {"type": ["string", "null"]},
            },
        },
        "outbound": {
            "type": "object",
            "description": "whether outside calls can work: a route (asterisk.outbound_dial)"
                           " and how many agents may call out",
            "required": ["route_configured", "agents_allowed"],
            "properties": {
                "route_configured": {"type": "boolean"},
                "agents_allowed": {"type": "integer", "minimum": 0},
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"},
                     "description": "settings stored but unable to work here"},
        "phones": {
            "type": "object",
            "required": ["watched", "registered_agents"],
            "properties": {
                "watched": {"type": "boolean"},
                "registered_agents": {"type": ["integer", "null"], "minimum": 0},
            },
        },
        "nodes": {
            "type": "array",
            "description": "every Asterisk node (docs/scale-out.md); one, `default`, "
                           "without [[asterisk.nodes]]",
            "items": {
                "type": "object",
                "required": ["name", "site", "reachable", "applied_version", "registered",
                             "last_error"],
                "properties": {
                    "name": {"type": "string"},
                    "site": {"type": ["string", "null"]},
                    "ami": {"type": "string"},
                    "sip_server": {"type": "string"},
                    "reachable": {"type": ["boolean", "null"],
                                  "description": "its AMI answered at the last apply "
                                                 "(null: not tried yet)"},
                    "applied_version": {"type": "integer",
                                        "description": "last version applied and "
                                                       "verified on this node"},
                    "applied_at": {"type": ["string", "null"], "format": "date-time"},
                    "checked_at": {"type": ["string", "null"], "format": "date-time"},
                    "registered": {"type": ["integer", "null"], "minimum": 0,
                                   "description": "agents with a phone registered there "
                                                  "(null: not watched); with shared "
                                                  "contacts, the registrations this node "
                                                  "took (reg_server = its systemname)"},
                    "system_name": {"type": ["string", "null"],
                                    "description": "the node's systemname, from AMI "
                                                   "(null: not known yet)"},
                    "last_error": {"type": ["string", "null"]},
                    "last_error_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
        },
        "config": {
            "type": "object",
            "required": ["version", "applied_version", "pending", "reloads", "last_error"],
            "properties": {
                "version": {"type": "integer"},
                "applied_version": {"type": "integer"},
                "pending": {"type": "integer", "minimum": 0},
                "applied_at": {"type": ["string", "null"], "format": "date-time"},
                "last_apply_ms": {"type": ["integer", "null"]},
                "reloads": {"type": "object", "additionalProperties": {"type": "integer"}},
                "last_error": {"type": ["string", "null"]},
                "quarantined": {
                    "type": "array",
                    "description": "agents and queues kept out of Asterisk because a value "
                                   "of theirs does not render; released once it does",
                    "items": {
                        "type": "object",
                        "required": ["kind", "id", "reason", "since"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["agent", "queue"]},
                            "id": {"type": "integer"},
                            "reason": {"type": "string"},
                            "since": {"type": "string", "format": "date-time"},
                        },
                    },
                },
            },
        },
    },
}


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    ok = await db_health.database_ok(services.pool)
    state = "ok" if ok else "unavailable"
    return json_response({"status": state, "database": state,
                          "instance": services.instance or instance_id(),
                          "leader": services.is_leader}, status=200 if ok else 503)


async def instance_status(services: Services) -> dict[str, Any]:
    """This instance, whether it leads, and who leads as the database sees it."""
    leadership = services.leadership
    since = leadership.since if leadership is not None and leadership.is_leader else None
    return {
        "id": services.instance or instance_id(),
        "leader": services.is_leader,
        "leader_since": (datetime.fromtimestamp(since, UTC).isoformat()
                         if since is not None else None),
        "leader_id": (await current_leader(services.pool) if leadership is not None
                      else services.instance or instance_id() if services.is_leader else None),
    }


async def status(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    state = await db_health.config(services.pool)
    held_out = await quarantine.current(services.pool)
    live: dict[str, Any] = services.applier.status() if services.applier is not None else {}
    last_error = state.last_error if state.last_error is not None else live.get("last_error")
    route = bool(services.cfg.asterisk.outbound_dial)
    allowed = await agent_sql.outbound_allowed_count(services.pool)
    warnings = []
    if allowed and not route:
        warnings.append(f"{allowed} agents have outbound_allowed but no outbound route is"
                        " configured (asterisk.outbound_dial): their outside calls fail")
    phones = services.phones
    nodes = await nodestatus.report(
        services.cfg, services.pool, live.get("nodes"),
        phones.nodes() if phones is not None else None)
    body = {
        "database": "ok",
        "instance": await instance_status(services),
        "outbound": {"route_configured": route, "agents_allowed": allowed},
        "warnings": warnings,
        "asterisk": {
            "connected": bool(live.get("ami_connected", False)),
            "version": live.get("asterisk_version"),
        },
        "phones": {
            "watched": bool(phones is not None and phones.connected),
            "registered_agents": (phones.registered_count()
                                  if phones is not None and phones.connected else None),
        },
        "config": {
            "version": state.version,
            "applied_version": state.applied_version,
            "pending": state.pending,
            "applied_at": state.applied_at,
            "last_apply_ms": state.last_apply_ms,
            "reloads": dict(live.get("reloads") or {}),
            "last_error": last_error,
            "quarantined": [q.to_dict() for q in held_out],
        },
        "nodes": nodes,
    }
    return json_response(body)


ROUTES = [
    Route("GET", "/api/v1/health", health, "Liveness and database reachability (no token)",
          "status", public=True,
          replies={200: Reply("the service and its database are up", HEALTH_SCHEMA),
                   503: Reply("the database is unreachable", HEALTH_SCHEMA)}),
    Route("GET", "/api/v1/status", status,
          "Database, Asterisk connection and config versions (pending vs applied)", "status",
          replies={200: Reply("current state", STATUS_SCHEMA)}),
]
