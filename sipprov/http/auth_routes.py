"""Web login checks for the contact-centre front-end: a user's login and password,
and a user's own password change. Both check a password, so both go through the
failed-login rate limiter (per login and per client address)."""

from __future__ import annotations

from aiohttp import web

from sipprov.agents import service as agents
from sipprov.agents.models import parse
from sipprov.db.transaction import run
from sipprov.errors import AuthError
from sipprov.http.bodies import ChangePasswordRequest, LoginRequest
from sipprov.http.errors import read_json_object
from sipprov.http.keys import LOGIN_LIMITER, SERVICES
from sipprov.http.responses import json_response
from sipprov.http.routes import Reply, Route

LOGIN_SCHEMA = {
    "type": "object",
    "required": ["must_change_password"],
    "properties": {
        "must_change_password": {"type": "boolean"},
        "user_id": {"type": "integer"},
    },
}
WRONG = "wrong login or password"


def client_address(request: web.Request) -> str | None:
    """The address failed logins are counted against.

    X-Forwarded-For is only believed when the operator says a proxy of theirs is in
    front (http.trust_forwarded_for); its last entry is the one that proxy added.
    """
    if request.app[SERVICES].cfg.http.trust_forwarded_for:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [p for p in forwarded if p]
        if forwarded:
            return forwarded[-1][:64]
    return request.remote


async def login(request: web.Request) -> web.Response:
    body = parse(LoginRequest, await read_json_object(request))
    limiter = request.app[LOGIN_LIMITER]
    address = client_address(request)
    await limiter.check(body.login, address)
    result = await agents.verify_login(request.app[SERVICES].pool, body.login, body.password)
    if result.deactivated:
        raise AuthError("this account is deactivated", code="account_deactivated")
    if not result.ok:
        await limiter.failure(body.login, address)
        raise AuthError(WRONG, code="invalid_credentials")
    await limiter.success(body.login)
    out: dict[str, object] = {"must_change_password": result.must_change_password}
    if result.user_id is not None:
        out["user_id"] = result.user_id
    return json_response(out)


async def change_password(request: web.Request) -> web.Response:
    body = parse(ChangePasswordRequest, await read_json_object(request))
    limiter = request.app[LOGIN_LIMITER]
    address = client_address(request)
    await limiter.check(body.login, address)
    services = request.app[SERVICES]
    try:
        await run(services.pool, agents.change_own_password, services.cfg, body.login,
                                         body.old_password, body.new_password)
    except AuthError:
        await limiter.failure(body.login, address)
        raise AuthError(WRONG, code="invalid_credentials") from None
    await limiter.success(body.login)
    return web.Response(status=204)


ROUTES = [
    Route("POST", "/api/v1/auth/login", login, "Check a user's web login and password",
          "auth", body=LoginRequest, errors=(429,),
          replies={200: Reply("the password is right", LOGIN_SCHEMA)}),
    Route("POST", "/api/v1/auth/change-password", change_password,
          "A user changes their own web password (old password required)", "auth",
          body=ChangePasswordRequest, errors=(429,),
          replies={204: Reply("changed")}),
]
