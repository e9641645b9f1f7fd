"""The console's middleware: who is logged in, which language, the CSRF check on every
POST, HTML error pages, and the security headers. API paths (/api/) and /metrics pass
straight through to the API's own middlewares."""

from __future__ import annotations

import logging
import traceback

from aiohttp import web

from sipprov import i18n
from sipprov.db.database import DatabaseUnavailable, is_unavailable
from sipprov.http.errors import Handler
from sipprov.http.keys import SERVICES
from sipprov.web import keys, language, pages, security, sessions

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
STATIC_PREFIX = "/static/"
METRICS_PATH = "/metrics"  # Prometheus (sipprov.http.metrics): not a page


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return pages.render(request, "web/error.html",
                        {"status": status, "title": title, "message": message}, status=status)


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(API_PREFIX) or request.path == METRICS_PATH:
        return await handler(request)
    if request.path.startswith(STATIC_PREFIX):
        response = await handler(request)
        security.add_headers(response, cache=True)
        return response
    response = await _page(request, handler)
    security.add_headers(response)
    anon = request.get(keys.ANON_CSRF)
    if keys.user(request) is None and request.cookies.get(security.CSRF_COOKIE) != anon:
        security.set_cookie(response, request, security.CSRF_COOKIE, request[keys.ANON_CSRF])
    return response


async def _page(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[keys.LANG] = language.choose(request.cookies.get(language.LANG_COOKIE),
                                         accept=request.headers.get("Accept-Language"))
    request[keys.ANON_CSRF] = request.cookies.get(security.CSRF_COOKIE) or sessions.new_token()
    _ = i18n.translations(request[keys.LANG]).gettext
    try:
        pool = request.app[SERVICES].pool
        user = await sessions.current(pool, request.cookies.get(sessions.SESSION_COOKIE))
        request[keys.USER] = user
        if user is not None:
            request[keys.LANG] = language.choose(user.language, user.user_language)
            _ = i18n.translations(request[keys.LANG]).gettext
        if request.method == "POST":
            form = await request.post()
            request[keys.FORM] = form
            if not security.csrf_ok(request, form):
                log.info("console: POST %s refused: CSRF token missing or wrong", request.path)
                return _error_page(request, 403, _("Form expired"),
                                   _("This form was not sent from this page or has expired. "
                                     "Go back, reload the page and try again."))
        return await handler(request)
    except pages.GoTo as goto:
        return pages.redirect(goto.location)
    except pages.Forbidden:
        return _error_page(request, 403, _("Not allowed"),
                           _("Your role does not give access to this page."))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return _error_page(request, 404, _("Not found"), _("There is no such page."))
        if exc.status == 413:
            return _error_page(request, 413, _("Too large"), _("The file is too large."))
        return _error_page(request, exc.status, exc.reason, exc.reason)
    except DatabaseUnavailable:
        return _error_page(request, 503, _("Unavailable"),
                           _("The database is unavailable; try again shortly."))
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if is_unavailable(exc):
            return _error_page(request, 503, _("Unavailable"),
                               _("The database is unavailable; try again shortly."))
        # Type and frames only: a message can quote form data, and forms hold passwords.
        log.error("console: internal error on %s %s: %s\n%s", request.method, request.path,
                  type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
        return _error_page(request, 500, _("Something went wrong"),
                           _("The operator's log has details."))
