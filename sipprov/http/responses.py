"""JSON responses and query-string parsing shared by the handlers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
from functools import partial
from typing import Any

from aiohttp import web

from sipprov.errors import NotFoundError, ValidationError


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


dumps = partial(json.dumps, default=_default, ensure_ascii=False)


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def query_bool(request: web.Request, name: str, default: bool | None = None) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValidationError(f"{name} must be true or false", field=name)


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", field=name) from None
    if not lo <= value <= hi:
        raise ValidationError(f"{name} must be between {lo} and {hi}", field=name)
    return value


def query_str(request: web.Request, name: str, max_length: int = 200) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_length:
        raise ValidationError(f"{name} is longer than {max_length} characters", field=name)
    if any(ord(ch) < 32 or ch == "\x7f" for ch in raw):
        raise ValidationError(f"{name} contains control characters", field=name)
    return raw


def path_int(request: web.Request, name: str, what: str) -> int:
    """A numeric path id; anything else (or out of bigint range) is a 404, not a 500."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise NotFoundError(f"no {what} with id {raw[:40]!r}")
    return int(raw)
