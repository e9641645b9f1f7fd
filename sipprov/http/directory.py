"""/api/v1/roles, /api/v1/departments, /api/v1/account-types: the lists an admin picks
from when creating a user. Only one change reaches Asterisk: a role's sip_allowed turned
off with force=true takes its agents' SIP accounts away (applied by the applier as
usual)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from sipprov.agents.models import (
    AccountTypeCreate,
    AccountTypeUpdate,
    DepartmentCreate,
    DepartmentUpdate,
    RoleCreate,
    RoleUpdate,
    parse,
)
from sipprov.db.transaction import run
from sipprov.directory import lookups as directory
from sipprov.http.errors import read_json_object
from sipprov.http.keys import SERVICES, actor
from sipprov.http.openapi_schemas import (
    ACCOUNT_TYPE_SCHEMA,
    DEPARTMENT_SCHEMA,
    ROLE_SCHEMA,
    list_of,
)
from sipprov.http.responses import json_response, query_bool
from sipprov.http.routes import FORCE_PARAM, Param, Reply, Route, Schema

ROLES = "/api/v1/roles"
DEPARTMENTS = "/api/v1/departments"
ACCOUNT_TYPES = "/api/v1/account-types"


# Each list's handlers are the same five steps on its own service functions.


async def _list(request: web.Request, fetch: Callable[..., Awaitable[list[Any]]]) -> web.Response:
    items = await fetch(request.app[SERVICES].pool)
    return json_response({"items": [i.to_dict() for i in items]})


async def _get(request: web.Request, fetch: Callable[..., Awaitable[Any]]) -> web.Response:
    item = await fetch(request.app[SERVICES].pool, request.match_info["name"])
    return json_response(item.to_dict())


async def _create(request: web.Request, model: type[Any], add: Callable[..., Awaitable[Any]],
                  base: str) -> web.Response:
    data = parse(model, await read_json_object(request))
    s = request.app[SERVICES]
    item = await run(s.pool, add, s.cfg, data, actor(request))
    return json_response(item.to_dict(), status=201,
                         headers={"Location": f"{base}/{quote(item.name, safe='')}"})


async def _update(request: web.Request, model: type[Any],
                  change: Callable[..., Awaitable[Any]], *, forceable: bool = False) -> web.Response:
    extra = {"force": bool(query_bool(request, "force", False))} if forceable else {}
    data = parse(model, await read_json_object(request))
    s = request.app[SERVICES]
    item = await run(s.pool, change, s.cfg, request.match_info["name"], data, actor(request), **extra)
    return json_response(item.to_dict())


async def _delete(request: web.Request, remove: Callable[..., Awaitable[None]],
                  *, forceable: bool = False) -> web.Response:
    s = request.app[SERVICES]
    extra = {"force": bool(query_bool(request, "force", False))} if forceable else {}
    await run(s.pool, remove, s.cfg, request.match_info["name"], actor(request), **extra)
    return web.Response(status=204)


# --- roles ---------------------------------------------------------------------------


async def list_roles(request: web.Request) -> web.Response:
    return await _list(request, directory.list_roles)


async def get_role(request: web.Request) -> web.Response:
    return await _get(request, directory.get_role)


async def create_role(request: web.Request) -> web.Response:
    return await _create(request, RoleCreate, directory.create_role, ROLES)


async def update_role(request: web.Request) -> web.Response:
    return await _update(request, RoleUpdate, directory.update_role, forceable=True)


async def delete_role(request: web.Request) -> web.Response:
    return await _delete(request, directory.delete_role)


# --- departments ---------------------------------------------------------------------


async def list_departments(request: web.Request) -> web.Response:
    return await _list(request, directory.list_departments)


async def get_department(request: web.Request) -> web.Response:
    return await _get(request, directory.get_department)


async def create_department(request: web.Request) -> web.Response:
    return await _create(request, DepartmentCreate, directory.create_department, DEPARTMENTS)


async def update_department(request: web.Request) -> web.Response:
    return await _update(request, DepartmentUpdate, directory.update_department)


async def delete_department(request: web.Request) -> web.Response:
    return await _delete(request, directory.delete_department, forceable=True)


# --- account types -------------------------------------------------------------------


async def list_account_types(request: web.Request) -> web.Response:
    return await _list(request, directory.list_account_types)


async def get_account_type(request: web.Request) -> web.Response:
    return await _get(request, directory.get_account_type)


async def create_account_type(request: web.Request) -> web.Response:
    return await _create(request, AccountTypeCreate, directory.create_account_type,
                         ACCOUNT_TYPES)


async def update_account_type(request: web.Request) -> web.Response:
    return await _update(request, AccountTypeUpdate, directory.update_account_type)


def _crud(base: str, what: str, schema: Schema, handlers: list[Any], create: type,
          update: type, delete_note: str = "", delete_query: tuple[Param, ...] = (),
          update_query: tuple[Param, ...] = ()) -> list[Route]:
    """The routes of one directory list; `handlers`: list, create, get, update[, delete]."""
    one = f"{base}/{{name}}"
    routes = [
        Route("GET", base, handlers[0], f"List {what}s", "directory",
              replies={200: Reply(f"all {what}s", list_of(schema))}),
        Route("POST", base, handlers[1], f"Create a {what}", "directory",
              body=create, errors=(409,),
              replies={201: Reply("created", schema,
                                  headers={"Location": f"the new {what}'s URL"})}),
        Route("GET", one, handlers[2], f"One {what}", "directory",
              replies={200: Reply(f"the {what}", schema)}),
        Route("PATCH", one, handlers[3], f"Change a {what} (only the fields sent)",
              "directory", body=update, errors=(409,), query=update_query,
              replies={200: Reply(f"the changed {what}", schema)}),
    ]
    if len(handlers) > 4:
        routes.append(Route("DELETE", one, handlers[4], f"Delete a {what} ({delete_note})",
                            "directory", query=delete_query,
                            errors=(409,), replies={204: Reply("deleted")}))
    return routes


ROUTES = [
    *_crud(ROLES, "role", ROLE_SCHEMA,
           [list_roles, create_role, get_role, update_role, delete_role],
           RoleCreate, RoleUpdate, "refused while it has users, and for builtin roles",
           update_query=(FORCE_PARAM,)),
    *_crud(DEPARTMENTS, "department", DEPARTMENT_SCHEMA,
           [list_departments, create_department, get_department, update_department,
            delete_department],
           DepartmentCreate, DepartmentUpdate,
           "in use: only with force=true; its users stay, without a department",
           (FORCE_PARAM,)),
    # Account types are never deleted: users keep pointing at them.
    *_crud(ACCOUNT_TYPES, "account type", ACCOUNT_TYPE_SCHEMA,
           [list_account_types, create_account_type, get_account_type,
            update_account_type],
           AccountTypeCreate, AccountTypeUpdate),
]
