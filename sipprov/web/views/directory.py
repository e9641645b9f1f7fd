"""Admin pages for what agents refer to: queues (members and penalties), departments,
roles (listed; edited in views/roles.py) and account types (licence use as used/limit). Changes go through
sipprov.directory, as the API's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sipprov.agents.models import (
    AccountTypeCreate,
    AccountTypeUpdate,
    DepartmentCreate,
    QueueCreate,
    parse,
)
from sipprov.db.transaction import run
from sipprov.directory import lookups
from sipprov.directory import queues as queue_service
from sipprov.errors import ConfirmationRequired, NotFoundError, SipprovError
from sipprov.web import pages
from sipprov.web.pages import admin_only


def _error(request: web.Request, exc: SipprovError) -> dict[str, str]:
    return {(exc.field or "name").split(".")[0]: pages.service_message(request, exc)}


# --- queues ---------------------------------------------------------------------------


async def _queues_page(request: web.Request, errors: dict[str, str] | None = None,
                       values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    queues = await queue_service.list_queues(pages.services(request).pool)
    return pages.render(request, "web/queues/list.html", {
        "queues": queues, "errors": errors or {}, "values": values or {"kind": "voice"},
        "done": request.query.get("done")}, status=status)


@admin_only
async def queues(request: web.Request) -> web.StreamResponse:
    return await _queues_page(request)


@admin_only
async def create_queue(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    form = pages.form(request)
    _ = pages.gettext(request)
    values = {k: pages.text(form, k) for k in ("label", "name", "kind", "number")}
    data: dict[str, Any] = {"name": values["name"] or None, "label": values["label"] or None,
                            "kind": values["kind"] or "voice"}
    if values["number"]:
        if not values["number"].isdecimal():
            return await _queues_page(request, {"number": _("Enter a whole number.")}, values, 422)
        data["number"] = int(values["number"])
    try:
        await run(services.pool, queue_service.create_queue, services.cfg, parse(QueueCreate, data),
                                         pages.actor(request))
    except SipprovError as exc:
        return await _queues_page(request, _error(request, exc), values, 422)
    return pages.redirect("/queues?done=created")


@admin_only
async def queue(request: web.Request) -> web.StreamResponse:
    try:
        found = await queue_service.get_queue(pages.services(request).pool,
                                              request.match_info["name"])
    except NotFoundError:
        raise web.HTTPNotFound() from None
    return pages.render(request, "web/queues/show.html",
                        {"queue": found, "done": request.query.get("done"),
                         "error": request.query.get("error")})


@admin_only
async def set_penalty(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    name = request.match_info["name"]
    raw = request.match_info["agent_id"]
    penalty_text = pages.text(pages.form(request), "penalty")
    if not raw.isdecimal() or (penalty_text and not penalty_text.isdecimal()):
        raise web.HTTPNotFound() if not raw.isdecimal() else web.HTTPUnprocessableEntity()
    try:
        await run(services.pool, queue_service.set_member, services.cfg, name, int(raw),
                                       int(penalty_text) if penalty_text else None,
                                       pages.actor(request))
    except NotFoundError:
        raise web.HTTPNotFound() from None
    except SipprovError:
        return pages.redirect(f"/queues/{name}?error=penalty")
    return pages.redirect(f"/queues/{name}?done=saved")


# --- departments, roles, account types ------------------------------------------------------


async def _directory_page(request: web.Request, errors: dict[str, dict[str, str]] | None = None,
                          status: int = 200, confirm: dict[str, str] | None = None) -> web.Response:
    pool = pages.services(request).pool
    return pages.render(request, "web/directory.html", {
        "departments": await lookups.list_departments(pool),
        "roles": await lookups.list_roles(pool),
        "account_types": await lookups.list_account_types(pool),
        "errors": errors or {}, "done": request.query.get("done"), "confirm": confirm,
    }, status=status)


@admin_only
async def directory(request: web.Request) -> web.StreamResponse:
    return await _directory_page(request)


@admin_only
async def create_entry(request: web.Request) -> web.StreamResponse:
    """POST /directory/{kind}: a new department or account type (roles: views/roles.py)."""
    services = pages.services(request)
    kind = request.match_info["kind"]
    form = pages.form(request)
    _ = pages.gettext(request)
    name = pages.text(form, "name")
    try:
        if kind == "departments":
            await run(services.pool, lookups.create_department, services.cfg,
                                            parse(DepartmentCreate, {"name": name}), pages.actor(request))
        elif kind == "account_types":
            limit = pages.text(form, "max_users")
            if limit and not limit.isdecimal():
                return await _directory_page(request, {kind: {"max_users": _("Enter a whole number.")}}, 422)
            await run(services.pool, lookups.create_account_type, services.cfg, parse(AccountTypeCreate, {
                "name": name, "max_users": int(limit) if limit else None}), pages.actor(request))
        else:
            raise web.HTTPNotFound()
    except SipprovError as exc:
        return await _directory_page(request, {kind: _error(request, exc)}, 422)
    return pages.redirect(f"/directory?done={kind}#{kind}")


@admin_only
async def set_licence_limit(request: web.Request) -> web.StreamResponse:
    """POST /directory/account_types/{name}/limit: a new licence limit (empty: none)."""
    services = pages.services(request)
    name = request.match_info["name"]
    _ = pages.gettext(request)
    limit = pages.text(pages.form(request), "max_users")
    if limit and not limit.isdecimal():
        return await _directory_page(
            request, {"account_types": {"max_users:" + name: _("Enter a whole number.")}}, 422)
    try:
        await run(services.pool, lookups.update_account_type, services.cfg, name,
                  parse(AccountTypeUpdate, {"max_users": int(limit) if limit else None}),
                  pages.actor(request))
    except NotFoundError:
        raise web.HTTPNotFound() from None
    except SipprovError as exc:
        return await _directory_page(
            request, {"account_types": {"max_users:" + name: pages.service_message(request, exc)}}, 422)
    return pages.redirect("/directory?done=account_types#account_types")


@admin_only
async def delete_department(request: web.Request) -> web.StreamResponse:
    """POST /directory/departments/{name}/delete; a department in use asks to confirm
    (its users stay, without a department)."""
    services = pages.services(request)
    name = request.match_info["name"]
    try:
        await run(services.pool, lookups.delete_department, services.cfg, name, pages.actor(request),
                  force=pages.form(request).get("force") is not None)
    except NotFoundError:
        raise web.HTTPNotFound() from None
    except ConfirmationRequired as exc:
        return await _directory_page(request, status=409, confirm={"department": name, "what": exc.what})
    return pages.redirect("/directory?done=departments#departments")
