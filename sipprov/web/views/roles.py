"""Admin pages for roles: list (with user counts), create, edit, delete. Every change
goes through sipprov.directory.lookups, as the API's; a change that would take SIP
accounts away (sip_allowed off while agents of the role have one) is the service's
ConfirmationRequired, shown as a page saying who loses what, confirmed with `force`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from sipprov.agents.models import Role, RoleCreate, RoleUpdate, parse
from sipprov.db.transaction import run
from sipprov.directory import lookups
from sipprov.errors import ConfirmationRequired, NotFoundError, SipprovError
from sipprov.web import pages
from sipprov.web.pages import admin_only

FLAGS = ("sip_allowed", "web_login", "calls_allowed")
LIST = "/directory/roles"


def _message(request: web.Request, exc: SipprovError, role: str, users: int) -> str:
    """The service's refusals of roles in the page's language (the rest as worded)."""
    _ = pages.gettext(request)
    code, field = getattr(exc, "code", ""), getattr(exc, "field", "")
    count = pages.number(request, users)
    if code == "role_builtin":
        return _("Builtin role %(name)s cannot be deleted.") % {"name": role}
    if code == "role_in_use" and field == "name":
        return _("Role %(name)s still has users (%(count)s): move them to another role first."
                 ) % {"name": role, "count": count}
    if code == "role_in_use":
        return _("Role %(name)s has users (%(count)s): move them to another role before giving"
                 " the role SIP accounts.") % {"name": role, "count": count}
    if code == "conflict" and field == "name":
        return _("A role with this name already exists.")
    return pages.service_message(request, exc)


def _flags(data: MultiDictProxy) -> dict[str, bool]:
    return {flag: data.get(flag) is not None for flag in FLAGS}


async def _list_page(request: web.Request, errors: dict[str, str] | None = None,
                     values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    return pages.render(request, "web/roles/list.html", {
        "roles": await lookups.list_roles(pages.services(request).pool),
        "errors": errors or {},
        "values": values or {"web_login": True, "calls_allowed": True},
        "done": request.query.get("done"),
    }, status=status)


async def _role(request: web.Request) -> Role:
    try:
        return await lookups.get_role(pages.services(request).pool, request.match_info["name"])
    except NotFoundError:
        raise web.HTTPNotFound() from None


@admin_only
async def list_roles(request: web.Request) -> web.StreamResponse:
    return await _list_page(request)


@admin_only
async def create(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    form = pages.form(request)
    values: dict[str, Any] = {"name": pages.text(form, "name"), "label": pages.text(form, "label"),
                              **_flags(form)}
    try:
        await run(services.pool, lookups.create_role, services.cfg,
                  parse(RoleCreate, {**values, "label": values["label"] or None}), pages.actor(request))
    except SipprovError as exc:
        field = (exc.field or "name").split(".")[0]
        return await _list_page(request, {field: _message(request, exc, values["name"], 0)}, values, 422)
    return pages.redirect(f"{LIST}?done=created")


def _edit_page(request: web.Request, role: Role, values: dict[str, Any],
               errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    return pages.render(request, "web/roles/edit.html",
                        {"role": role, "values": values, "errors": errors or {}}, status=status)


@admin_only
async def edit_form(request: web.Request) -> web.StreamResponse:
    role = await _role(request)
    return _edit_page(request, role, {"name": role.name, "label": role.label,
                                      **{f: getattr(role, f) for f in FLAGS}})


@admin_only
async def update(request: web.Request) -> web.StreamResponse:
    """POST /directory/roles/{name}; `force` confirms taking SIP accounts away."""
    services = pages.services(request)
    role = await _role(request)
    form = pages.form(request)
    values: dict[str, Any] = {"name": pages.text(form, "name") or role.name,
                              "label": pages.text(form, "label") or role.label, **_flags(form)}
    data = {k: v for k, v in values.items() if k != "name" or not role.builtin}
    try:
        changed = await run(services.pool, lookups.update_role, services.cfg, role.name,
                            parse(RoleUpdate, data), pages.actor(request),
                            force=form.get("force") is not None)
    except ConfirmationRequired as exc:
        return pages.render(request, "web/roles/confirm.html", {
            "role": role, "values": values, "count": exc.lost["sip_accounts"],
            "logins": exc.lost["logins"]}, status=409)
    except NotFoundError:
        raise web.HTTPNotFound() from None
    except SipprovError as exc:
        field = (exc.field or "name").split(".")[0]
        return _edit_page(request, role, values,
                          {field: _message(request, exc, role.name, role.user_count)}, 422)
    return pages.redirect(f"{LIST}?done=saved#role-{changed.name}")


@admin_only
async def delete(request: web.Request) -> web.StreamResponse:
    """POST /directory/roles/{name}/delete: custom roles without users only (the service's
    rule); otherwise the list again with the reason."""
    services = pages.services(request)
    role = await _role(request)
    try:
        await run(services.pool, lookups.delete_role, services.cfg, role.name, pages.actor(request))
    except NotFoundError:
        raise web.HTTPNotFound() from None
    except SipprovError as exc:
        return await _list_page(
            request, {"delete": _message(request, exc, role.name, role.user_count)}, status=409)
    return pages.redirect(f"{LIST}?done=deleted")
