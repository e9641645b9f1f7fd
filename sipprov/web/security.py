"""Console security: cookie flags, the CSRF check, and the response headers.

- Cookies are HttpOnly and SameSite=Strict, and Secure when the request came over TLS
  (directly, or through a proxy the operator trusts: `http.trust_forwarded_for` also
  makes us believe its X-Forwarded-Proto), or always with `http.secure_cookies`.
- Every form carries a CSRF token; every POST is refused (403) unless its token matches:
  the session's own token when logged in, else the browser's CSRF cookie (double
  submit; only the login and language forms are posted without a session).
- A Content-Security-Policy without 'unsafe-inline': the console's JavaScript is files
  under /static, never inline; no framing; forms post only to us.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from multidict import MultiDictProxy

from sipprov.http.keys import SERVICES
from sipprov.web import keys

CSRF_COOKIE = "sipprov_csrf"
CSRF_FIELD = "csrf_token"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def is_tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS (cookies get Secure, links https)."""
    http = request.app[SERVICES].cfg.http
    if request.secure or http.secure_cookies:
        return True
    if http.trust_forwarded_for:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        return proto == "https"
    return False


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=is_tls(request))


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    response.del_cookie(name, path="/", secure=is_tls(request), httponly=True, samesite="Strict")


def expected_token(request: web.Request) -> str | None:
    user = keys.user(request)
    return user.csrf_token if user is not None else request.get(keys.ANON_CSRF)


def csrf_ok(request: web.Request, form: MultiDictProxy) -> bool:
    """The form's token equals the expected one (constant-time compare)."""
    sent = form.get(CSRF_FIELD)
    expected = expected_token(request)
    if not isinstance(sent, str) or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def add_headers(response: web.StreamResponse, *, cache: bool = False) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not cache:
        response.headers["Cache-Control"] = "no-store"
