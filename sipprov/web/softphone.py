"""The softphone set-up shown with a freshly rotated SIP password - on /me and on the
admin's agent page alike: a one-time Linphone provisioning link and its QR code
(templates/web/softphone.html renders them)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sipprov.agents import provisioning
from sipprov.web import pages, qr, security


def origin(request: web.Request) -> str:
    """This service's address as the browser reached it (the QR code's link)."""
    scheme = "https" if security.is_tls(request) else "http"
    return f"{scheme}://{request.host}"


async def setup(request: web.Request, user_id: int) -> dict[str, Any]:
    """A new one-time link for the user's SIP account: the template context of the
    `softphone` macro (link, qr, minutes)."""
    token = await provisioning.issue_link(pages.services(request).pool, user_id)
    link = origin(request) + provisioning.PATH_PREFIX + token
    return {"link": link, "qr": qr.data_uri(link), "minutes": provisioning.LINK_LIFETIME_S // 60}
