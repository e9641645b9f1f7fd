"""The Asterisk page: config version applied vs pending, the last apply error, what the
applier holds out of Asterisk (quarantine), the phones registered right now (AMI), and
every Asterisk node (docs/scale-out.md)."""

from __future__ import annotations

from aiohttp import web

from sipprov import health
from sipprov.apply import nodestatus, quarantine, registrations
from sipprov.web import pages
from sipprov.web.pages import admin_only


@admin_only
async def asterisk(request: web.Request) -> web.StreamResponse:
    services = pages.services(request)
    state = await health.config(services.pool)
    held_out = await quarantine.current(services.pool)
    live = services.applier.status() if services.applier is not None else {}
    phones = services.phones
    nodes = await nodestatus.report(services.cfg, services.pool, live.get("nodes"),
                                    phones.nodes() if phones is not None else None)
    try:
        contacts, unreachable = await registrations.contacts(services.cfg.asterisk), None
    except registrations.Unreachable as exc:
        contacts, unreachable = [], str(exc)
    return pages.render(request, "web/asterisk.html", {
        "state": state, "live": live, "contacts": contacts, "unreachable": unreachable,
        "last_error": state.last_error or live.get("last_error"), "held_out": held_out,
        "nodes": nodes,
    })
