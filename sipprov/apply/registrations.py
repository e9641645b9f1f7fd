"""Which phones are registered right now, asked of Asterisk (AMI PJSIPShowContacts).

Read-only and short-lived: the console's Asterisk page and an agent's own page call it
on each view with a short timeout; when Asterisk does not answer the page says so
instead of failing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sipprov.apply.ami import AmiClient, AmiError
from sipprov.config import AsteriskConfig

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Contact:
    endpoint: str
    uri: str
    status: str
    user_agent: str
    roundtrip_ms: float | None


class Unreachable(Exception):
    """Asterisk did not answer (the reason is the message)."""


def _contact(m: Any) -> Contact:
    get = m.get
    name = str(get("ObjectName") or "")
    endpoint = str(get("Endpoint") or get("Aor") or name.split(";")[0])
    usec = str(get("RoundtripUsec") or "")
    return Contact(
        endpoint=endpoint,
        uri=str(get("Uri") or ""),
        status=str(get("Status") or ""),
        user_agent=str(get("UserAgent") or ""),
        roundtrip_ms=int(usec) / 1000 if usec.isdigit() and int(usec) > 0 else None,
    )


async def contacts(cfg: AsteriskConfig) -> list[Contact]:
    """Every registered contact, sorted by endpoint. Raises Unreachable."""
    client = AmiClient(cfg)
    client.timeout = min(cfg.ami_timeout_s, TIMEOUT_S)
    try:
        await asyncio.wait_for(client.connect(), TIMEOUT_S)
        answer = await client.send({"Action": "PJSIPShowContacts"})
    except (TimeoutError, AmiError, OSError) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from None
    finally:
        await client.close()
    if not isinstance(answer, list):
        if answer.success or "No contacts found" in str(answer.message):
            return []
        raise Unreachable(str(answer.message))
    found = [_contact(m) for m in answer[1:] if m.get("Event") == "ContactList"]
    return sorted(found, key=lambda c: (len(c.endpoint), c.endpoint, c.uri))
