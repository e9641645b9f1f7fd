"""The quarantine: agents and queues kept out of Asterisk because their data does not
render (one bad row never blocks everyone).

The render decides (render.render_isolating); the applier records the outcome in
apply_quarantine after each render, so the table always holds exactly what the files
leave out. Readers (GET /status, the agent record, `sipprov agents show`) read the
table: the applier may run in another process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from sipprov.apply.render import Quarantined
from sipprov.db.sql import quarantine as sql


@dataclass(frozen=True)
class QuarantineEntry:
    kind: str
    id: int
    reason: str
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "reason": self.reason,
                "since": self.since.isoformat()}


def _entries(rows: list[asyncpg.Record]) -> list[QuarantineEntry]:
    return [QuarantineEntry(r["kind"], int(r["id"]), r["reason"], r["since"]) for r in rows]


async def current(conn: asyncpg.Connection | asyncpg.Pool) -> list[QuarantineEntry]:
    """What is quarantined now (as last recorded by an applier)."""
    return _entries(await sql.list_all(conn))


async def record(conn: asyncpg.Connection, items: list[Quarantined]) -> list[QuarantineEntry]:
    """Make the table hold exactly `items`: new ones enter, released ones leave."""
    rows = await sql.replace_all(conn, [(q.kind, q.id, q.reason) for q in items])
    return _entries(rows)
