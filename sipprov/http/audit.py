"""/api/v1/audit: the audit log, newest first, filtered and paged (readonly tokens may
read it; it never holds a secret)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from sipprov import audit
from sipprov.agents import service as agents
from sipprov.errors import ValidationError
from sipprov.http.keys import SERVICES
from sipprov.http.responses import json_response, query_int, query_str
from sipprov.http.routes import Param, Reply, Route

DEFAULT_LIMIT = 100


def query_time(request: web.Request, name: str) -> datetime | None:
    """An ISO 8601 time with its offset (`2026-11-29T10:00:00+00:00`, or `Z`)."""
    raw = query_str(request, name, 40)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise ValidationError(f"{name}: not an ISO 8601 time (2026-11-29T10:00:00Z)", name) from None
    if value.tzinfo is None:
        raise ValidationError(f"{name}: give the time zone (Z or +01:00)", name)
    return value


async def resolve_agent(conn: agents.Conn, ref: str) -> int:
    """An agent named by id, login or e-mail (the `agent` filter); 422 when none."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        return int(ref)
    found = await agents.find_agent(conn, ref)
    if found is None:
        raise ValidationError(f"agent: no agent {ref}", "agent")
    return found.id


async def list_audit(request: web.Request) -> web.Response:
    pool = request.app[SERVICES].pool
    entity = query_str(request, "entity", 40)
    entity_id = query_str(request, "entity_id", 40)
    agent = query_str(request, "agent", 320)
    if agent is not None:
        if entity not in (None, "agent") or entity_id is not None:
            raise ValidationError("agent: give either agent or entity/entity_id", "agent")
        entity, entity_id = "agent", str(await resolve_agent(pool, agent))
    page = await audit.page(
        pool, entity=entity, entity_id=entity_id, actor=query_str(request, "actor", 200),
        since=query_time(request, "since"), until=query_time(request, "until"),
        cursor=query_str(request, "cursor", 40),
        limit=query_int(request, "limit", DEFAULT_LIMIT, 1, audit.AUDIT_LIMIT_MAX))
    return json_response(page.to_dict())


ENTRY_SCHEMA = {
    "type": "object",
    "required": ["id", "at", "actor", "action", "entity", "entity_id", "details"],
    "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
        "actor": {"type": "string", "description": "token:<name>, cli:<user>, web:<login>"},
        "action": {"type": "string"}, "entity": {"type": "string"},
        "entity_id": {"type": ["string", "null"]}, "details": {"type": "object"},
    },
}
PAGE_SCHEMA = {
    "type": "object", "required": ["items", "next"],
    "properties": {"items": {"type": "array", "items": ENTRY_SCHEMA},
                   "next": {"type": ["string", "null"]}},
}

ROUTES = [
    Route("GET", "/api/v1/audit", list_audit, "The audit log, newest first", "audit",
          query=(
              Param("agent", {"type": "string"}, "changes of this agent (id, login or e-mail)"),
              Param("entity", {"type": "string"}, "agent, queue, role, department, account_type, token"),
              Param("entity_id", {"type": "string"}, "with entity: that one record"),
              Param("actor", {"type": "string"}, "who made the change (token:<name>, cli:<user>, ...)"),
              Param("since", {"type": "string", "format": "date-time"}, "at or after this time"),
              Param("until", {"type": "string", "format": "date-time"}, "before this time"),
              Param("limit", {"type": "integer", "minimum": 1, "maximum": audit.AUDIT_LIMIT_MAX},
                    f"page size (default {DEFAULT_LIMIT})"),
              Param("cursor", {"type": "string"}, "the `next` value of the previous page"),
          ),
          replies={200: Reply("one page of entries", PAGE_SCHEMA)}),
]
