"""`?wait=applied`: answer a mutation once Asterisk has the change, or 202 with the
pending config version when it does not arrive in time.

The change is committed before we wait, so a wait that fails or times out must still
return everything the client will never see again (a generated password): the 202
body is the normal body plus `pending_version`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sipprov.errors import ValidationError
from sipprov.http.keys import SERVICES
from sipprov.http.responses import json_response
from sipprov.http.routes import Param

log = logging.getLogger(__name__)

MAX_WAIT_S = 600.0
VERSION_HEADER = "X-Sipprov-Config-Version"

PARAMS = (
    Param("wait", {"type": "string", "enum": ["applied"]},
          "answer once Asterisk has applied the change (else 202 after the timeout)"),
    Param("wait_timeout", {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
          "seconds to wait with wait=applied (default: the server's http.wait_timeout_s)"),
)


@dataclass(frozen=True)
class Wait:
    applied: bool
    timeout_s: float


def parse_wait(request: web.Request) -> Wait:
    """Read the wait options; called before the mutation so bad ones change nothing."""
    mode = request.query.get("wait", "")
    if mode not in ("", "applied"):
        raise ValidationError("wait must be 'applied'", field="wait")
    timeout = request.app[SERVICES].cfg.http.wait_timeout_s
    raw = request.query.get("wait_timeout")
    if raw not in (None, ""):
        try:
            timeout = float(raw)
        except ValueError:
            raise ValidationError("wait_timeout must be a number of seconds",
                                  field="wait_timeout") from None
        if not math.isfinite(timeout) or not 0 <= timeout <= MAX_WAIT_S:
            raise ValidationError(f"wait_timeout must be between 0 and {MAX_WAIT_S:g}",
                                  field="wait_timeout")
    return Wait(applied=mode == "applied", timeout_s=timeout)


async def _applied(request: web.Request, version: int, timeout_s: float) -> bool:
    try:
        return await request.app[SERVICES].wait_applied(version, timeout_s)
    except Exception as exc:  # noqa: BLE001 - the change is committed; report it as pending
        log.warning("waiting for config version %d failed: %s", version, type(exc).__name__)
        return False


async def respond(
    request: web.Request,
    wait: Wait,
    version: int | None,
    status: int,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The mutation's response, after waiting for `version` when asked to."""
    headers = dict(headers or {})
    if version is not None:
        headers[VERSION_HEADER] = str(version)
        if wait.applied and not await _applied(request, version, wait.timeout_s):
            return json_response({**(body or {}), "pending_version": version},
                                 status=202, headers=headers)
    if body is None:
        return web.Response(status=status, headers=headers)
    return json_response(body, status=status, headers=headers)
