"""Shared by the service-layer tests (agents, queues, directory) against the real
PostgreSQL: agent bodies with e-mails kept apart, and the config version."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import asyncpg

from sipprov.agents.models import AgentCreate, parse
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
