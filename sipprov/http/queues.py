"""/api/v1/queues: voice queues reach Asterisk (so they take ?wait=applied); chat and
ticket queues are stored only. Members are agents with a SIP account."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from sipprov.agents.models import QueueCreate, QueueMember, QueueMemberSet, QueueUpdate, parse
from sipprov.db.transaction import run
from sipprov.directory import queues
from sipprov.http.errors import read_json_object
from sipprov.http.keys import SERVICES, actor
from sipprov.http.openapi import ref
from sipprov.http.openapi_schemas import QUEUE_SCHEMA, list_of
from sipprov.http.responses import json_response, path_int, query_bool, query_str
from sipprov.http.routes import FORCE_PARAM, Param, Reply, Route
from sipprov.http.waiting import parse_wait, respond


def location(name: str) -> str:
    return f"/api/v1/queues/{quote(name, safe='')}"


async def list_queues(request: web.Request) -> web.Response:
    items = await queues.list_queues(request.app[SERVICES].pool, query_str(request, "kind", 16))
    return json_response({"items": [q.to_dict() for q in items]})


async def get_queue(request: web.Request) -> web.Response:
    queue = await queues.get_queue(request.app[SERVICES].pool, request.match_info["name"])
    return json_response(queue.to_dict())


async def create_queue(request: web.Request) -> web.Response:
    wait = parse_wait(request)
    data = parse(QueueCreate, await read_json_object(request))
    services = request.app[SERVICES]
    queue, version = await run(services.pool, queues.create_queue, services.cfg, data, actor(request))
    return await respond(request, wait, version, 201, queue.to_dict(),
                         headers={"Location": location(queue.name)})


async def update_queue(request: web.Request) -> web.Response:
    wait = parse_wait(request)
    data = parse(QueueUpdate, await read_json_object(request))
    services = request.app[SERVICES]
    queue, version = await run(services.pool, queues.update_queue, services.cfg,
                                               request.match_info["name"], data, actor(request))
    return await respond(request, wait, version, 200, queue.to_dict())


async def delete_queue(request: web.Request) -> web.Response:
    wait = parse_wait(request)
    force = bool(query_bool(request, "force", False))
    services = request.app[SERVICES]
    version = await run(services.pool, queues.delete_queue, services.cfg,
                                        request.match_info["name"], actor(request), force=force)
    return await respond(request, wait, version, 204, None)


async def set_member(request: web.Request) -> web.Response:
    agent_id = path_int(request, "agent_id", "agent")
    wait = parse_wait(request)
    data = parse(QueueMemberSet, await read_json_object(request, empty_ok=True))
    services = request.app[SERVICES]
    member, version = await run(services.pool, queues.set_member, services.cfg,
                                              request.match_info["name"], agent_id,
                                              data.penalty, actor(request))
    return await respond(request, wait, version, 200, member.to_dict())


async def remove_member(request: web.Request) -> web.Response:
    agent_id = path_int(request, "agent_id", "agent")
    wait = parse_wait(request)
    services = request.app[SERVICES]
    version = await run(services.pool, queues.remove_member, services.cfg,
                                         request.match_info["name"], agent_id, actor(request))
    return await respond(request, wait, version, 204, None)


QUEUE = "/api/v1/queues/{name}"
MEMBER = "/api/v1/queues/{name}/members/{agent_id}"

ROUTES = [
    Route("GET", "/api/v1/queues", list_queues, "List queues", "queues",
          query=(Param("kind", {"type": "string", "enum": ["voice", "chat", "ticket"]},
                       "only queues of this kind"),),
          replies={200: Reply("all queues (without member lists)", list_of(QUEUE_SCHEMA))}),
    Route("POST", "/api/v1/queues", create_queue, "Create a queue", "queues",
          body=QueueCreate, waits=True, errors=(409,),
          replies={201: Reply("created", QUEUE_SCHEMA,
                              headers={"Location": "the new queue's URL"})}),
    Route("GET", QUEUE, get_queue, "One queue with its members", "queues",
          replies={200: Reply("the queue", QUEUE_SCHEMA)}),
    Route("PATCH", QUEUE, update_queue, "Change a queue (only the fields sent)", "queues",
          body=QueueUpdate, waits=True, errors=(409,),
          replies={200: Reply("the changed queue", QUEUE_SCHEMA)}),
    Route("DELETE", QUEUE, delete_queue,
          "Delete a queue and its memberships (with members: only with force=true)", "queues",
          waits=True, query=(FORCE_PARAM,), errors=(409,), replies={204: Reply("deleted")}),
    Route("PUT", MEMBER, set_member,
          "Add an agent to a queue, or change its penalty (null: priority - 1)", "queues",
          body=QueueMemberSet, body_required=False, waits=True,
          replies={200: Reply("the membership", ref(QueueMember))}),
    Route("DELETE", MEMBER, remove_member, "Remove an agent from a queue", "queues",
          waits=True, replies={204: Reply("removed")}),
]
