"""/api/v1/agents: create, read, search, update, delete, and the two passwords.

Generated secrets (web password, SIP password) are in the response of the call that
made them and nowhere else: no GET ever returns a secret.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from sipprov import mailer
from sipprov.agents import service as agents
from sipprov.agents.models import (
    Agent,
    AgentCreate,
    AgentUpdate,
    SipPasswordSet,
    WebPasswordSet,
    parse,
)
from sipprov.agents.validation import DEPARTMENT_NAME_MAX, QUEUE_NAME_MAX, ROLE_NAME_MAX
from sipprov.apply.phones import PhoneTracker
from sipprov.db.transaction import run
from sipprov.http import avatars as avatar_links
from sipprov.http.errors import read_json_object
from sipprov.http.keys import SERVICES, actor
from sipprov.http.openapi_schemas import (
    AGENT_CREATED_SCHEMA,
    AGENT_DETAIL_SCHEMA,
    AGENT_PAGE_SCHEMA,
    SIP_SCHEMA,
    WEB_PASSWORD_SCHEMA,
)
from sipprov.http.responses import json_response, path_int, query_bool, query_int, query_str
from sipprov.http.routes import FORCE_PARAM, Param, Reply, Route
from sipprov.http.waiting import parse_wait, respond

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def location(agent_id: int) -> str:
    return f"/api/v1/agents/{agent_id}"


def present(request: web.Request, agent: Agent) -> Agent:
    """The agent as the API shows it: with its warnings, and an uploaded avatar as a
    signed link a web page can show without a bearer token."""
    agent = agents.flagged(request.app[SERVICES].cfg, agent)
    if agent.avatar_url.startswith("/api/"):
        agent = dataclasses.replace(agent, avatar_url=avatar_links.signed_url(request, agent.id))
    return agent


async def create_agent(request: web.Request) -> web.Response:
    wait = parse_wait(request)
    data = parse(AgentCreate, await read_json_object(request))
    services = request.app[SERVICES]
    created = await run(services.pool, agents.create_agent, services.cfg, data, actor(request))
    body = present(request, created.agent).to_dict()
    body["credentials"] = created.credentials()
    if data.send_credentials:  # after the commit; how it went is in the reply
        mail = await mailer.send_created(services.cfg.smtp, created, data.password)
        body["credentials_email"] = mail.to_dict()
    return await respond(request, wait, created.config_version, 201, body,
                         headers={"Location": location(created.agent.id)})


async def get_agent(request: web.Request) -> web.Response:
    agent_id = path_int(request, "id", "agent")
    services = request.app[SERVICES]
    agent = await agents.get_agent(services.pool, agent_id)
    body = present(request, agent).to_dict()
    body["registration"] = registration(services.phones, agent.extension)
    return json_response(body)


def registration(phones: PhoneTracker | None, extension: int | None) -> dict[str, Any] | None:
    """The agent's phone as Asterisk last told us (None: not watched / no extension)."""
    if phones is None or not phones.connected or extension is None:
        return None
    regs = phones.registrations(extension)
    return {"registered": bool(regs), "contacts": [r.as_dict() for r in regs]}


async def list_agents(request: web.Request) -> web.Response:
    page = await agents.search_agents(
        request.app[SERVICES].pool,
        q=query_str(request, "q"),
        role=query_str(request, "role", ROLE_NAME_MAX),
        department=query_str(request, "department", DEPARTMENT_NAME_MAX),
        queue=query_str(request, "queue", QUEUE_NAME_MAX),
        agents_only=bool(query_bool(request, "agents_only", False)),
        active=query_bool(request, "active"),
        limit=query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        cursor=query_str(request, "cursor", 512),
    )
    page = dataclasses.replace(page, items=[present(request, a) for a in page.items])
    return json_response(page.to_dict())


async def update_agent(request: web.Request) -> web.Response:
    agent_id = path_int(request, "id", "agent")
    wait = parse_wait(request)
    force = bool(query_bool(request, "force", False))
    data = parse(AgentUpdate, await read_json_object(request))
    services = request.app[SERVICES]
    updated = await run(services.pool, agents.update_agent, services.cfg, agent_id, data,
                                        actor(request), force=force)
    updated = dataclasses.replace(updated, agent=present(request, updated.agent))
    return await respond(request, wait, updated.config_version, 200, updated.to_dict())


async def delete_agent(request: web.Request) -> web.Response:
    agent_id = path_int(request, "id", "agent")
    wait = parse_wait(request)
    services = request.app[SERVICES]
    version = await run(services.pool, agents.delete_agent, services.cfg, agent_id, actor(request))
    return await respond(request, wait, version, 204, None)


async def set_web_password(request: web.Request) -> web.Response:
    agent_id = path_int(request, "id", "agent")
    data = parse(WebPasswordSet, await read_json_object(request, empty_ok=True))
    services = request.app[SERVICES]
    if data.send_credentials:  # refused before anything changes
        mailer.refuse_unmailable(await agents.get_agent(services.pool, agent_id))
    generated = await run(
        services.pool, agents.set_web_password, services.cfg, agent_id, data.password, data.force_change,
        actor(request))
    body: dict[str, Any] = {"web_password": generated} if generated is not None else {}
    if data.send_credentials:  # after the commit, with the password of this moment
        agent = await agents.get_agent(services.pool, agent_id)
        mail = await mailer.send_changed(services.cfg.smtp, agent,
                                         web_password=generated or data.password)
        body["credentials_email"] = mail.to_dict()
    return json_response(body)


async def rotate_sip_password(request: web.Request) -> web.Response:
    agent_id = path_int(request, "id", "agent")
    wait = parse_wait(request)
    data = parse(SipPasswordSet, await read_json_object(request, empty_ok=True))
    services = request.app[SERVICES]
    if data.send_credentials:  # refused before anything changes
        mailer.refuse_unmailable(await agents.get_agent(services.pool, agent_id))
    sip, version = await run(
        services.pool, agents.rotate_sip_password, services.cfg, agent_id, data.password, actor(request))
    body: dict[str, Any] = {"sip": sip.to_dict()}
    if data.send_credentials:  # after the commit, with the password of this moment
        agent = await agents.get_agent(services.pool, agent_id)
        body["credentials_email"] = (await mailer.send_changed(services.cfg.smtp, agent, sip=sip)).to_dict()
    return await respond(request, wait, version, 200, body)


LIST_PARAMS = (
    Param("q", {"type": "string", "maxLength": 200},
          "every word in the first/last name, login or e-mail (case and diacritics"
          " ignored), or an extension"),
    Param("role", {"type": "string", "maxLength": ROLE_NAME_MAX},
          "only users of this role (unknown: 422)"),
    Param("department", {"type": "string", "maxLength": DEPARTMENT_NAME_MAX},
          "only users of this department (unknown: 422)"),
    Param("queue", {"type": "string", "maxLength": QUEUE_NAME_MAX},
          "only members of this queue (unknown: 422)"),
    Param("agents_only", {"type": "boolean"}, "only users that are agents"),
    Param("active", {"type": "boolean"},
          "true: only active users; false: only deactivated ones (default: both)"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
          f"page size (default {DEFAULT_LIMIT})"),
    Param("cursor", {"type": "string", "maxLength": 512},
          "the `next` value of the previous page"),
)

ROUTES = [
    Route("POST", "/api/v1/agents", create_agent, "Create a user/agent", "agents",
          body=AgentCreate, waits=True, errors=(409,),
          replies={201: Reply("created; `credentials` holds generated secrets, shown once",
                              AGENT_CREATED_SCHEMA,
                              headers={"Location": "the new agent's URL"})}),
    Route("GET", "/api/v1/agents", list_agents, "List and search users", "agents",
          query=LIST_PARAMS, replies={200: Reply("one page of users", AGENT_PAGE_SCHEMA)}),
    Route("GET", "/api/v1/agents/{id}", get_agent, "One user", "agents",
          replies={200: Reply("the user, with its phone's registration", AGENT_DETAIL_SCHEMA)}),
    Route("PATCH", "/api/v1/agents/{id}", update_agent,
          "Change a user (only the fields sent)", "agents",
          body=AgentUpdate, waits=True, errors=(409,), query=(FORCE_PARAM,),
          replies={200: Reply("the changed user; `credentials` when a SIP password was "
                              "generated (extension change)", AGENT_CREATED_SCHEMA)}),
    Route("DELETE", "/api/v1/agents/{id}", delete_agent, "Delete a user", "agents",
          waits=True, replies={204: Reply("deleted")}),
    Route("POST", "/api/v1/agents/{id}/password", set_web_password,
          "Set or generate a user's web password", "agents",
          body=WebPasswordSet, body_required=False,
          replies={200: Reply("`web_password` only when generated", WEB_PASSWORD_SCHEMA)}),
    Route("POST", "/api/v1/agents/{id}/sip-password", rotate_sip_password,
          "Set or generate a user's SIP password (the old one stops working)", "agents",
          body=SipPasswordSet, body_required=False, waits=True, errors=(409,),
          replies={200: Reply("the new SIP credentials, shown once", SIP_SCHEMA)}),
]
