"""Typed keys for what a console request carries (set by sipprov.web.middleware)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sipprov.web.sessions import WebUser

_RequestKey: Any = getattr(web, "RequestKey", None)


def _key(name: str, kind: type) -> Any:
    return _RequestKey(name, kind) if _RequestKey is not None else f"sipprov.web.{name}"


# The logged-in user, or None.
USER = _key("web_user", object)
# The language of this page ("en", "pl", "vi").
LANG = _key("web_lang", str)
# The browser's CSRF cookie value (forms shown before login use it).
ANON_CSRF = _key("web_anon_csrf", str)
# The parsed POST form (checked for its CSRF token before any handler runs).
FORM = _key("web_form", object)


def user(request: web.Request) -> WebUser | None:
    return request.get(USER)


def lang(request: web.Request) -> str:
    return request.get(LANG, "en")
