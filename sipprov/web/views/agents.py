"""Admin pages for agents: list and search, add (with a live preview of what the name
derives), show, edit, delete, and the two passwords. Every change goes through
sipprov.agents.service, exactly as the API's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sipprov import i18n, mailer
from sipprov.agents import preview as agent_preview
from sipprov.agents import service as agents
from sipprov.agents.models import AgentCreate, AgentUpdate, parse
from sipprov.db.transaction import run
from sipprov.directory import lookups
from sipprov.directory import queues as queue_service
from sipprov.errors import ConfirmationRequired, NotFoundError, SipprovError, ValidationError
from sipprov.web import agentform, applied, pages, softphone
from sipprov.web.pages import admin_only

PAGE_SIZE = 25


def _agent_id(request: web.Request) -> int:
    raw = request.match_info.get("id", "")
    if not raw.isdecimal() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


async def _get(request: web.Request) -> Any:
    try:
        return await agents.get_agent(pages.services(request).pool, _agent_id(request))
    except NotFoundError:
        raise web.HTTPNotFound() from None


async def _choices(request: web.Request) -> dict[str, Any]:
    pool = pages.services(request).pool
    _ = pages.gettext(request)
    roles = await lookups.list_roles(pool)
    queues = await queue_service.list_queues(pool)
    return {
        "roles": [(r.name, r.label) for r in roles],
        "role_flags": {r.name: {"sip": r.sip_allowed, "web": r.web_login} for r in roles},
        "departments": [(d.name, d.name) for d in await lookups.list_departments(pool)],
        "account_types": [(t.name, t.name) for t in await lookups.list_account_types(pool)],
        "ticket_queues": [(q.name, q.name) for q in queues if q.kind == "ticket"],
        "outbound_modes": [("manual", _("manual")), ("automatic", _("automatic"))],
        "languages": [(code, i18n.display_name(code)) for code in i18n.LANGUAGES],
        "queues": queues,
    }


@admin_only
async def list_agents(request: web.Request) -> web.StreamResponse:
    q = request.query
    pool = pages.services(request).pool
    filters = {name: q.get(name, "").strip()[:200] for name in ("q", "role", "department", "queue")}
    agents_only = q.get("agents_only") == "1"
    error = None
    try:
        page = await agents.search_agents(
            pool, q=filters["q"] or None, role=filters["role"] or None,
            department=filters["department"] or None, queue=filters["queue"] or None,
            agents_only=agents_only, limit=PAGE_SIZE, cursor=q.get("cursor") or None)
    except ValidationError as exc:
        page, error = None, pages.service_message(request, exc)
    return pages.render(request, "web/agents/list.html", {
        **await _choices(request), "filters": filters, "agents_only": agents_only,
        "page": page, "error": error, "done": q.get("done"),
        "cursor": q.get("cursor"),
    })


def _form_context(choices: dict[str, Any], values: dict[str, Any], errors: dict[str, str],
                  **extra: Any) -> dict[str, Any]:
    return {**choices, "groups": agentform.GROUPS, "values": values, "errors": errors, **extra}


@admin_only
async def new_form(request: web.Request) -> web.StreamResponse:
    choices = await _choices(request)
    values = dict(agentform.DEFAULTS, queues={},
                  language=pages.services(request).cfg.defaults.language)
    return pages.render(request, "web/agents/form.html",
                        _form_context(choices, values, {}, creating=True))


@admin_only
async def create(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    choices = await _choices(request)
    _ = pages.gettext(request)
    posted = agentform.read_create(pages.form(request), [q.name for q in choices["queues"]], _,
                                   lambda e: pages.service_message(request, e))
    created = None
    if not posted.errors:
        try:
            data = parse(AgentCreate, posted.data)
            created = await run(services.pool, agents.create_agent, services.cfg, data, pages.actor(request))
        except SipprovError as exc:
            posted.errors[(exc.field or "_form").split(".")[0]] = pages.service_message(request, exc)
    if created is None:
        return pages.render(request, "web/agents/form.html",
                            _form_context(choices, posted.values, posted.errors, creating=True),
                            status=422)
    mail = None
    if data.send_credentials:
        mail = await mailer.send_created(services.cfg.smtp, created, data.password)
    state = await applied.wait(request, created.config_version)
    return pages.render(request, "web/agents/created.html", {
        "agent": created.agent, "web_password": created.web_password, "sip": created.sip,
        "applied": state, "mail": mail, "title": _("Agent created"),
    })


@admin_only
async def preview(request: web.Request) -> web.StreamResponse:
    """The add form's live preview (JSON): login, caller id, chat name, extension."""
    q = request.query
    extension = q.get("extension", "").strip()
    result = await agent_preview.preview_create(
        pages.services(request).pool, pages.services(request).cfg,
        q.get("first_name", ""), q.get("last_name", ""), q.get("login", "").strip() or None,
        int(extension) if extension.isdecimal() and len(extension) <= 5 else None)
    return web.json_response(result.to_dict())


@admin_only
async def show(request: web.Request) -> web.StreamResponse:
    agent = agents.flagged(pages.services(request).cfg, await _get(request))
    return pages.render(request, "web/agents/show.html",
                        {"agent": agent, "done": request.query.get("done")})


@admin_only
async def edit_form(request: web.Request) -> web.StreamResponse:
    agent = await _get(request)
    return pages.render(request, "web/agents/form.html", _form_context(
        await _choices(request), agentform.values_of(agent), {}, creating=False, agent=agent))


@admin_only
async def update(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    agent = await _get(request)
    choices = await _choices(request)
    _ = pages.gettext(request)
    posted = agentform.read_update(pages.form(request), agent, [q.name for q in choices["queues"]],
                                   _, lambda e: pages.service_message(request, e))
    result = None
    confirm = None
    if not posted.errors:
        try:
            result = await run(
                services.pool, agents.update_agent, services.cfg, agent.id,
                parse(AgentUpdate, posted.data), pages.actor(request),
                force=pages.form(request).get("force") is not None)
        except ConfirmationRequired as exc:  # e.g. a role without SIP drops the extension
            confirm = exc.what
        except SipprovError as exc:
            posted.errors[(exc.field or "_form").split(".")[0]] = pages.service_message(request, exc)
    if result is None:
        return pages.render(request, "web/agents/form.html", _form_context(
            choices, posted.values, posted.errors, creating=False, agent=agent, confirm=confirm),
            status=409 if confirm else 422)
    if result.web_password or result.sip:  # new secrets: shown once, here
        state = await applied.wait(request, result.config_version)
        return pages.render(request, "web/agents/created.html", {
            "agent": result.agent, "web_password": result.web_password, "sip": result.sip,
            "applied": state, "mail": None, "title": _("Agent saved"),
        })
    return pages.redirect(f"/agents/{agent.id}?done=saved")


@admin_only
async def delete_form(request: web.Request) -> web.StreamResponse:
    return pages.render(request, "web/agents/delete.html", {"agent": await _get(request)})


@admin_only
async def delete(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    agent = await _get(request)
    await run(services.pool, agents.delete_agent, services.cfg, agent.id, pages.actor(request))
    return pages.redirect("/agents?done=deleted")


@admin_only
async def set_active(request: web.Request) -> web.StreamResponse:
    """The Deactivate / Reactivate button: an update of `active`, as the API's PATCH."""
    services = pages.services(request)
    agent = await _get(request)
    active = pages.form(request).get("active") == "1"
    await run(services.pool, agents.update_agent, services.cfg, agent.id,
              parse(AgentUpdate, {"active": active}), pages.actor(request))
    return pages.redirect(f"/agents/{agent.id}?done=saved")


def _send_requested(request: web.Request, agent: Any) -> bool:
    """The form's "e-mail the new credentials" box; refused up front (nothing changes)
    for a role that is never mailed."""
    if pages.form(request).get("send_credentials") is None:
        return False
    mailer.refuse_unmailable(agent)
    return True


@admin_only
async def rotate_sip(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    agent = await _get(request)
    _ = pages.gettext(request)
    try:
        send = _send_requested(request, agent)
        sip, version = await run(services.pool, agents.rotate_sip_password, services.cfg, agent.id, None,
                                 pages.actor(request))
    except ValidationError as exc:
        return pages.render(request, "web/agents/show.html",
                            {"agent": agent, "error": pages.service_message(request, exc)}, status=422)
    mail = await mailer.send_changed(services.cfg.smtp, agent, sip=sip) if send else None
    phone = await softphone.setup(request, agent.id)
    state = await applied.wait(request, version)
    return pages.render(request, "web/agents/created.html", {
        "agent": agent, "web_password": None, "sip": sip, "applied": state, "mail": mail,
        "title": _("New SIP password"), "phone": phone,
    })


@admin_only
async def reset_web_password(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    agent = await _get(request)
    _ = pages.gettext(request)
    try:
        send = _send_requested(request, agent)
        generated = await run(services.pool, agents.set_web_password, services.cfg, agent.id, None, True,
                              pages.actor(request))
    except ValidationError as exc:
        return pages.render(request, "web/agents/show.html",
                            {"agent": agent, "error": pages.service_message(request, exc)}, status=422)
    mail = await mailer.send_changed(services.cfg.smtp, agent, web_password=generated) if send else None
    return pages.render(request, "web/agents/created.html", {
        "agent": agent, "web_password": generated, "sip": None, "applied": None, "mail": mail,
        "title": _("New web password"),
    })
