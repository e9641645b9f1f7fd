"""Helpers for the HTTP API tests (no fixtures here: those are in api_fixtures.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy


class FakeClock:
    """A monotonic clock the tests move by hand (login rate limiter)."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]
    raw: bytes


async def call(session: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> Reply:
    """One request; the body is parsed as JSON when it says it is JSON."""
    async with session.request(method, path, **kw) as resp:
        raw = await resp.read()
        body: Any = None
        if resp.content_type == "application/json" and raw:
            body = await resp.json()
        return Reply(resp.status, body, resp.headers, raw)


def agent_body(n: int = 1, **over: Any) -> dict[str, Any]:
    """A valid create body; `n` keeps names and e-mails apart."""
    body: dict[str, Any] = {
        "first_name": "Jan",
        "last_name": f"Kowalski{'' if n == 1 else chr(ord('a') + n % 26)}",
        "email": f"jan.kowalski{n}@example.com",
    }
    body.update(over)
    return body
