"""Log in, log out, change one's own password (also the forced change), switch language.

Login shares the API's failed-login limiter (the same object, per login and per
address), so guessing through the console gains nothing over the API.
"""

from __future__ import annotations

import math

from aiohttp import web

from sipprov.agents import service as agents
from sipprov.db.transaction import run
from sipprov.errors import AuthError, RateLimitedError, SipprovError
from sipprov.http.auth_routes import client_address
from sipprov.http.keys import LOGIN_LIMITER
from sipprov.web import keys, language, pages, security, sessions

LANG_COOKIE_AGE = 365 * 24 * 3600


def home_for(user: sessions.WebUser) -> str:
    return "/agents" if user.is_admin else "/me"


async def index(request: web.Request) -> web.StreamResponse:
    return pages.redirect(home_for(pages.current_user(request)))


async def login_form(request: web.Request) -> web.StreamResponse:
    user = keys.user(request)
    if user is not None:
        return pages.redirect(home_for(user))
    return pages.render(request, "web/login.html",
                        {"next": pages.safe_next(request.query.get("next"), ""), "login": ""})


async def login(request: web.Request) -> web.StreamResponse:
    form = pages.form(request)
    _ = pages.gettext(request)
    login_name = pages.text(form, "login")[:256]
    password = form.get("password", "")
    next_page = pages.safe_next(pages.text(form, "next"), "")
    limiter = request.app[LOGIN_LIMITER]
    address = client_address(request)
    ctx = {"next": next_page, "login": login_name}
    services = pages.services(request)
    try:
        await limiter.check(login_name, address)
    except RateLimitedError as exc:
        wait = max(1, math.ceil(exc.retry_after))
        ctx["error"] = _("Too many failed logins. Try again in %(seconds)s s.") % {"seconds": wait}
        response = pages.render(request, "web/login.html", ctx, status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    result = await agents.verify_login(services.pool, login_name,
                                       password if isinstance(password, str) else "")
    if result.deactivated:
        ctx["error"] = _("This account is deactivated. Ask an administrator.")
        return pages.render(request, "web/login.html", ctx, status=403)
    if not result.ok or result.user_id is None:
        await limiter.failure(login_name, address)
        ctx["error"] = _("Wrong login or password.")
        return pages.render(request, "web/login.html", ctx, status=401)
    await limiter.success(login_name)
    # No language of its own: the session speaks the user's until they switch it.
    value = await sessions.start(services.pool, result.user_id, None)
    target = "/password" if result.must_change_password else (next_page or "/")
    response = pages.redirect(target)
    security.set_cookie(response, request, sessions.SESSION_COOKIE, value)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    user = keys.user(request)
    if user is not None:
        await sessions.end(pages.services(request).pool, user)
    response = pages.redirect("/login")
    security.clear_cookie(response, request, sessions.SESSION_COOKIE)
    return response


async def password_form(request: web.Request) -> web.StreamResponse:
    pages.current_user(request)
    return pages.render(request, "web/password.html", {"errors": {}})


async def change_password(request: web.Request) -> web.StreamResponse:
    user = pages.current_user(request)
    _ = pages.gettext(request)
    form = pages.form(request)
    old, new, again = (form.get(n, "") for n in ("old_password", "new_password", "new_password_again"))
    errors: dict[str, str] = {}
    if not old:
        errors["old_password"] = _("Enter your current password.")
    if not new:
        errors["new_password"] = _("Enter a new password.")
    elif new != again:
        errors["new_password_again"] = _("The two new passwords differ.")
    limiter = request.app[LOGIN_LIMITER]
    address = client_address(request)
    services = pages.services(request)
    if not errors:
        try:
            await limiter.check(user.login, address)
            await run(services.pool, agents.change_own_password, services.cfg, user.login, old, new)
        except RateLimitedError as exc:
            errors["old_password"] = _("Too many failed logins. Try again in %(seconds)s s.") % {
                "seconds": max(1, math.ceil(exc.retry_after))}
        except AuthError:
            await limiter.failure(user.login, address)
            errors["old_password"] = _("The current password is wrong.")
        except SipprovError as exc:
            errors[exc.field or "new_password"] = pages.service_message(request, exc)
    if errors:
        return pages.render(request, "web/password.html", {"errors": errors}, status=422)
    await limiter.success(user.login)
    await sessions.end_others(services.pool, user)
    return pages.redirect(home_for(user) + "?done=password")


async def switch_language(request: web.Request) -> web.StreamResponse:
    form = pages.form(request)
    chosen = language.valid(pages.text(form, "lang")) or language.DEFAULT
    user = keys.user(request)
    if user is not None:
        await sessions.set_language(pages.services(request).pool, user, chosen)
    response = pages.redirect(pages.safe_next(pages.text(form, "next"), "/"))
    security.set_cookie(response, request, language.LANG_COOKIE, chosen, max_age=LANG_COOKIE_AGE)
    return response
