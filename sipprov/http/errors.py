"""Every failure leaves the API in one shape: {"error": {"code", "message", "field"}}.

The middleware here is the only place that turns exceptions into responses, so a
handler never builds an error body itself and no stack trace ever reaches a client.
Bad input is always a 4xx: malformed JSON is 400, a body of the wrong shape is 422, and
PostgreSQL data/constraint errors that slipped past validation are 422/409, not 500.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from sipprov.db.database import DatabaseUnavailable, is_unavailable
from sipprov.errors import RateLimitedError, SipprovError, ValidationError
from sipprov.http.keys import SERVICES

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Codes for aiohttp's own HTTP exceptions (routing, body size), by status.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class MalformedRequestError(SipprovError):
    """The body is not parseable JSON (HTTP 400)."""

    code = "malformed_json"
    status = 400


def error_body(code: str, message: str, field: str | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field, **(extra or {})}}


def error_response(
    status: int, code: str, message: str, field: str | None = None,
    headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
) -> web.Response:
    return web.json_response(error_body(code, message, field, extra), status=status,
                             headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; 400 if it is not JSON, 422 if not an object.

    `empty_ok`: an absent body counts as {} (for calls whose fields are all optional).
    """
    raw = await request.read()
    if not raw.strip():
        if empty_ok:
            return {}
        raise MalformedRequestError("request body is empty; a JSON object is expected")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequestError(f"request body is not valid JSON: {_short(exc)}") from None
    except RecursionError:
        raise MalformedRequestError("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _from_postgres(exc: asyncpg.PostgresError) -> web.Response | None:
    """Constraint and data errors are bad input the service layer did not catch."""
    column = getattr(exc, "column_name", None)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return error_response(409, "conflict", "a record with this value already exists")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return error_response(409, "conflict", "the record is referenced by or refers to another")
    if isinstance(exc, (asyncpg.CheckViolationError, asyncpg.NotNullViolationError)):
        return error_response(422, "validation_error", "a value is out of range", column)
    if isinstance(exc, asyncpg.DataError):
        return error_response(422, "validation_error", "a value is out of range or malformed",
                              column)
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RateLimitedError as exc:
        retry = str(max(1, int(exc.retry_after + 0.999)))
        return error_response(exc.status, exc.code, exc.message, exc.field,
                              headers={"Retry-After": retry})
    except SipprovError as exc:
        # A wrong token asks for a Bearer token; a wrong user password does not.
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=headers,
                              extra=exc.extra())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        message = exc.reason if exc.status != 413 else (
            f"request body is larger than {request.app[SERVICES].cfg.http.max_body_bytes} bytes")
        return error_response(exc.status, HTTP_CODES.get(exc.status, "http_error"),
                              message, headers=headers)
    except DatabaseUnavailable:
        return _unavailable()
    except Exception as exc:  # noqa: BLE001 - the last line of defence (not CancelledError)
        if is_unavailable(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.path,
                        type(exc).__name__)
            return _unavailable()
        if isinstance(exc, asyncpg.PostgresError):
            mapped = _from_postgres(exc)
            if mapped is not None:
                log.info("database refused %s %s: %s (sqlstate %s)", request.method,
                         request.path, type(exc).__name__, exc.sqlstate)
                return mapped
        # The type, route and stack frames, never the message: messages can quote
        # request data, and request data can hold passwords.
        log.error("internal error on %s %s: %s\n%s", request.method, request.path,
                  type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
        return error_response(500, "internal_error",
                              "internal server error; the operator's log has details")


def _unavailable() -> web.Response:
    return error_response(
        503, "database_unavailable",
        "the database is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )
