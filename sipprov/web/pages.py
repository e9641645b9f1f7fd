"""Helpers every console view uses: render a template in the request's language,
redirect after a POST, and the guards that decide who may see a page."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from sipprov import i18n
from sipprov.http.keys import SERVICES
from sipprov.i18n import reasons
from sipprov.web import keys
from sipprov.web.security import CSRF_FIELD, expected_token
from sipprov.web.sessions import WebUser

View = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Forbidden(Exception):
    """The logged-in user's role may not see this page (403)."""


class GoTo(Exception):
    """Leave this page for another (raised by the guards; the middleware redirects)."""

    def __init__(self, location: str):
        super().__init__(location)
        self.location = location


def render(request: web.Request, template: str, context: dict[str, Any] | None = None,
           status: int = 200) -> web.Response:
    lang = keys.lang(request)
    user = keys.user(request)
    ctx: dict[str, Any] = {
        **i18n.gettext_context(lang),
        "lang": lang,
        "user": user,
        "csrf_field": CSRF_FIELD,
        "csrf_token": expected_token(request),
        "languages": [(code, i18n.display_name(code)) for code in i18n.LANGUAGES],
        "language_name": i18n.display_name,
        "path": request.path_qs,
        "section": request.path.strip("/").split("/")[0],
    }
    ctx.update(context or {})
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the result."""
    return web.Response(status=303, headers={"Location": location})


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to (never another site: no scheme, no host, no //)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def form(request: web.Request) -> MultiDictProxy:
    return request[keys.FORM]


def text(data: MultiDictProxy, name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def services(request: web.Request) -> Any:
    return request.app[SERVICES]


def current_user(request: web.Request) -> WebUser:
    """The logged-in user; not logged in: to the login page and back here afterwards.

    A user who must change their password sees only that page (and logout) until done.
    """
    user = keys.user(request)
    if user is None:
        raise GoTo("/login?next=" + quote(request.path_qs, safe=""))
    if user.must_change_password and request.path not in ("/password", "/logout", "/language"):
        raise GoTo("/password")
    return user


def logged_in(view: View) -> View:
    @functools.wraps(view)
    async def guarded(request: web.Request) -> web.StreamResponse:
        current_user(request)
        return await view(request)
    return guarded


def admin_only(view: View) -> View:
    @functools.wraps(view)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not current_user(request).is_admin:
            raise Forbidden()
        return await view(request)
    return guarded


def actor(request: web.Request) -> str:
    """The audit-log name of the console user: `web:<login>`."""
    user = keys.user(request)
    return f"web:{user.login}" if user is not None else "web:anonymous"


def gettext(request: web.Request) -> Callable[[str], str]:
    return i18n.translations(keys.lang(request)).gettext


def number(request: web.Request, value: int) -> str:
    """A count in the page's language (`10 000`, `10.000`, `10,000`)."""
    return i18n.format_number(value, keys.lang(request))


def service_message(request: web.Request, exc: Exception) -> str:
    """A service error for the page, next to its field: the common ones in the page's
    language, the rest as the service words them (English), without the field prefix
    (the message stands next to the field)."""
    _ = gettext(request)
    code = getattr(exc, "code", "")
    known = {
        "login_taken": _("This login is already taken."),
        "email_taken": _("This e-mail address is already used by another user."),
        "extension_taken": _("This extension is already in use."),
        "licence_limit": _("The licence limit of this account type is reached."),
        "extension_pool_exhausted": _("No free extension is left in the configured range."),
    }
    if code in known:
        return known[code]
    template = getattr(exc, "template", None)
    if template:  # a catalog message (SipprovError.because)
        text = reasons.reason(_, template, getattr(exc, "params", None))
        return text[:1].upper() + text[1:]
    message = str(getattr(exc, "message", exc))
    field = getattr(exc, "field", None)
    if field and message.startswith(field + ": "):
        message = message[len(field) + 2:]
    return message[:1].upper() + message[1:]
