"""Self-service for every user with a web login: the own profile, whether the own phone
is registered, the own SIP password (rotated, shown once, with a QR code a softphone
can scan), and the one-time provisioning link the QR code points to."""

from __future__ import annotations

from aiohttp import web

from sipprov.agents import provisioning
from sipprov.agents import service as agents
from sipprov.apply import registrations
from sipprov.db.transaction import run
from sipprov.web import applied, pages, softphone
from sipprov.web.pages import logged_in


async def _registration(request: web.Request, extension: int | None) -> dict[str, object]:
    if extension is None:
        return {"known": True, "contacts": []}
    try:
        found = await registrations.contacts(pages.services(request).cfg.asterisk)
    except registrations.Unreachable:
        return {"known": False, "contacts": []}
    return {"known": True, "contacts": [c for c in found if c.endpoint == str(extension)]}


@logged_in
async def profile(request: web.Request) -> web.StreamResponse:
    user = pages.current_user(request)
    agent = await agents.get_agent(pages.services(request).pool, user.user_id)
    return pages.render(request, "web/me.html", {
        "agent": agent, "registration": await _registration(request, agent.extension),
        "done": request.query.get("done"),
    })


@logged_in
async def rotate_sip(request: web.Request) -> web.StreamResponse:
    user = pages.current_user(request)
    services = pages.services(request)
    agent = await agents.get_agent(services.pool, user.user_id)
    if agent.extension is None:
        raise pages.Forbidden()
    sip, version = await run(services.pool, agents.rotate_sip_password, services.cfg, agent.id, None,
                                                    pages.actor(request))
    phone = await softphone.setup(request, agent.id)
    state = await applied.wait(request, version)
    return pages.render(request, "web/me_sip.html", {
        "agent": agent, "sip": sip, "applied": state, "phone": phone,
    })


async def provisioning_xml(request: web.Request) -> web.StreamResponse:
    """GET /provisioning/{token}: Linphone's XML, once (no session: the phone fetches it)."""
    services = pages.services(request)
    account = await provisioning.take_link(services.pool, request.match_info.get("token", ""))
    if account is None:
        raise web.HTTPNotFound()
    return web.Response(text=provisioning.linphone_xml(services.cfg, account),
                        content_type="application/xml", charset="utf-8")
