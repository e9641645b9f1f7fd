"""Waiting briefly for Asterisk after a console change, so the page can say whether the
phone can use it already ("applied") or it is still pending. The change is committed
either way; a slow or absent Asterisk only changes what the page says."""

from __future__ import annotations

import logging

from aiohttp import web

from sipprov.http.keys import SERVICES

log = logging.getLogger(__name__)

WAIT_S = 15.0


async def wait(request: web.Request, version: int | None) -> bool | None:
    """True: applied; False: still pending; None: nothing for Asterisk changed."""
    if version is None:
        return None
    try:
        return await request.app[SERVICES].wait_applied(version, WAIT_S)
    except Exception as exc:  # noqa: BLE001 - committed; report it as pending
        log.warning("console: waiting for config version %d failed: %s", version, type(exc).__name__)
        return False
