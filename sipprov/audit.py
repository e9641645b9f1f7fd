"""The audit log: who changed what, when. Never a secret.

Rows are written inside the transaction of the change they describe, so a rolled-back
change leaves no audit row and a committed one always has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from sipprov.db.sql import audit as sql
from sipprov.errors import ValidationError

# Keys dropped from details whatever their value: passwords, hashes, digests, tokens.
# Matched by name and suffix rather than substring, so a flag such as
# `force_password_change` (not a secret) is kept.
SECRET_KEYS = frozenset({"password", "secret", "token", "hash", "digest", "ha1"})
SECRET_SUFFIXES = ("password", "_hash", "_digest", "_secret", "_token")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered.endswith(SECRET_SUFFIXES) or "ha1" in lowered


def scrub(details: Any) -> Any:
    """A copy of details without secret-looking keys, at any depth."""
    if isinstance(details, dict):
        return {k: scrub(v) for k, v in details.items() if not is_secret_key(str(k))}
    if isinstance(details, (list, tuple)):
        return [scrub(v) for v in details]
    return details


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: str,
    action: str,
    entity: str,
    entity_id: object | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one row in the caller's transaction."""
    text = json.dumps(scrub(details or {}), default=str, ensure_ascii=False)
    await sql.insert(conn, actor, action, entity, None if entity_id is None else str(entity_id), text)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "entity": self.entity,
            "entity_id": self.entity_id,
            "details": self.details,
        }


async def list_entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    entity: str | None = None,
    entity_id: object | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first; page with before_id = the last id seen. `since` is inclusive,
    `until` exclusive; `actor` ignores case."""
    rows = await sql.list_entries(
        conn, entity, None if entity_id is None else str(entity_id), before_id, limit,
        actor=actor, since=since, until=until,
    )
    return [
        AuditEntry(
            id=r["id"],
            at=r["at"],
            actor=r["actor"],
            action=r["action"],
            entity=r["entity"],
            entity_id=r["entity_id"],
            details=json.loads(r["details"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEntry]
    # The cursor of the next (older) page, or None.
    next: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": [e.to_dict() for e in self.items], "next": self.next}


AUDIT_LIMIT_MAX = 500


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    entity: str | None = None,
    entity_id: object | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> AuditPage:
    """One page of the log (newest first) for the API and the CLI; `cursor` is the
    `next` of the previous page."""
    if not 1 <= limit <= AUDIT_LIMIT_MAX:
        raise ValidationError(f"limit: must be between 1 and {AUDIT_LIMIT_MAX}", "limit")
    before = None
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
            raise ValidationError("cursor: not a cursor returned by this list", "cursor")
        before = int(cursor)
    if since is not None and until is not None and since >= until:
        raise ValidationError("until: must be after since", "until")
    items = await list_entries(conn, entity=entity, entity_id=entity_id, actor=actor,
                               since=since, until=until, before_id=before, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return AuditPage(items, str(items[-1].id) if more else None)
