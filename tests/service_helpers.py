"""Shared by the service-layer tests (agents, queues, directory) against the real
PostgreSQL: agent bodies with e-mails kept apart, the config version, and waiting for an
applier's first apply."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from sipprov.agents.models import AgentCreate, parse
from sipprov.apply.applier import Applier
from sipprov.db.sql import config_state

ACTOR = "admin:test"


def agent_maker(email_prefix: str) -> Callable[..., AgentCreate]:
    """A `new_agent(**fields)` whose e-mails are <email_prefix><n>@example.com, n = 1, 2, ..."""
    serial = itertools.count(1)

    def new_agent(**fields: Any) -> AgentCreate:
        n = next(serial)
        data = {"first_name": "Jan", "last_name": "Kowalski",
                "email": f"{email_prefix}{n}@example.com", **fields}
        return parse(AgentCreate, data)

    return new_agent


async def version(pool: asyncpg.Pool) -> int:
    return (await config_state.read(pool)).version


async def wait_first_apply(applier: Applier, timeout: float = 30, attempted: bool = False) -> None:
    """Until the applier's first apply is done (attempted: only over, perhaps failed)."""
    counter = "attempts" if attempted else "applies"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = applier.status()
        if st[counter] >= 1 and not st["busy"]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the applier's first apply did not happen: {applier.status()}")
