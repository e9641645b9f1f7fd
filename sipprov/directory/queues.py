"""Queues (voice, chat, ticket) and their memberships.

Only voice queues reach Asterisk (queues.conf sections, member lines with penalties,
and a dialplan number when they have one), so only changes to voice queues bump the
config version. Mutations return `(object, config_version)` where config_version is
None when Asterisk sees no change; deletes return just the version (or None).

Members must be agents with a SIP account (the rule of the user record), whatever the
queue kind.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

from sipprov import audit
from sipprov.agents import extensions, naming, validation
from sipprov.agents.models import Queue, QueueCreate, QueueMember, QueueUpdate
from sipprov.config import Config
from sipprov.db import transaction
from sipprov.db.sql import agents as agent_sql
from sipprov.db.sql import config_state
from sipprov.db.sql import queues as sql
from sipprov.db.sql.constraints import conflict_from
from sipprov.errors import ConfirmationRequired, NotFoundError

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


def _queue_from_row(row: asyncpg.Record, members: list[QueueMember] | None = None) -> Queue:
    return Queue(
        id=row["id"],
        name=row["name"],
        label=row["label"],
        kind=row["kind"],
        strategy=row["strategy"],
        number=row["number"],
        site=row["site"],
        member_count=row["member_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        members=members,
    )


def _member_from_row(row: asyncpg.Record) -> QueueMember:
    return QueueMember(
        agent_id=row["agent_id"],
        login=row["login"],
        extension=row["extension"],
        penalty=row["penalty"],
        penalty_override=row["penalty_override"],
    )


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"queue {name} not found", "name")


def _lookup_name(name: object) -> str:
    """A name from a URL: anything that cannot be a queue name is simply not found."""
    try:
        return validation.queue_name(name, "name")
    except validation.Refused:
        raise _not_found(str(name)[:80]) from None


async def list_queues(conn: Conn, kind: str | None = None) -> list[Queue]:
    """All queues (optionally of one kind) in name order, without member lists."""
    if kind is not None and kind not in ("voice", "chat", "ticket"):
        raise validation.Refused("kind", "must be voice, chat or ticket")
    return [_queue_from_row(r) for r in await sql.list_queues(conn, kind)]


async def get_queue(conn: Conn, name: str) -> Queue:
    """One queue with its members (effective penalty and override)."""
    row = await sql.get(conn, _lookup_name(name))
    if row is None:
        raise _not_found(name)
    members = [_member_from_row(m) for m in await sql.members(conn, row["id"])]
    return _queue_from_row(row, members)


async def create_queue(
    conn: asyncpg.Connection, cfg: Config, data: QueueCreate, actor: str
) -> tuple[Queue, int | None]:
    """Returns the queue and the config version (voice queues) or None."""
    transaction.require(conn)
    if data.number is not None and data.kind != "voice":
        raise validation.Refused("number", "only voice queues have a number")
    if data.name is not None:
        name = data.name
    elif data.label is not None:
        name = await _derive_name(conn, data.label)
    else:
        raise validation.Refused("name", "give a name or a label")
    label = data.label if data.label is not None else name
    queue_id = await sql.next_id(conn)
    if data.number is not None:
        await extensions.allocate_exact(
            conn, cfg.extensions, data.number, extensions.queue_owner(queue_id), field="number"
        )
    try:
        await sql.insert(conn, queue_id, name, label, data.kind, data.strategy, data.number,
                         data.site)
    except asyncpg.UniqueViolationError as exc:
        raise conflict_from(exc, name) from None
    await audit.record(
        conn,
        actor,
        "create",
        "queue",
        queue_id,
        {"name": name, "label": label, "kind": data.kind, "strategy": data.strategy,
         "number": data.number, "site": data.site},
    )
    queue = await get_queue(conn, name)
    version = await config_state.bump(conn) if data.kind == "voice" else None
    return queue, version


async def _derive_name(conn: asyncpg.Connection, label: str) -> str:
    """The Asterisk name for a label: folded to ASCII like logins (`Hỗ trợ` -> `ho-tro`),
    with `2`, `3`, ... when taken or reserved. A label with no Latin letters derives
    nothing: the admin gives the name."""
    base = naming.login_part(label)[: validation.QUEUE_NAME_MAX - naming.SUFFIX_ROOM].strip("-")
    if not base:
        raise validation.Refused(
            "name", "cannot derive a name from this label (no Latin letters); give the name")
    taken = await sql.names_like(conn, base) | validation.RESERVED_QUEUE_NAMES
    n = 1
    while naming.with_suffix(base, n).lower() in taken:
        n += 1
    return validation.queue_name(naming.with_suffix(base, n), "name")


async def update_queue(
    conn: asyncpg.Connection, cfg: Config, name: str, data: QueueUpdate, actor: str
) -> tuple[Queue, int | None]:
    """Rename, change strategy/kind/number. Leaving kind voice releases the number;
    `number: null` removes it. Returns the queue and the config version or None."""
    transaction.require(conn)
    fields = data.model_fields_set
    row = await sql.lock(conn, _lookup_name(name))
    if row is None:
        raise _not_found(name)
    # name, kind and strategy are never null when set (QueueUpdate.NOT_NULLABLE)
    new_name: str = data.name if data.name is not None else row["name"]
    label: str = data.label if data.label is not None else row["label"]
    kind: str = data.kind if data.kind is not None else row["kind"]
    strategy: str = data.strategy if data.strategy is not None else row["strategy"]
    number = row["number"]
    site: str | None = data.site if "site" in fields else row["site"]
    if "number" in fields:
        if data.number is not None and kind != "voice":
            raise validation.Refused("number", "only voice queues have a number")
        number = data.number
    elif kind != "voice":
        number = None

    after = (new_name, label, kind, strategy, number, site)
    if after == (row["name"], row["label"], row["kind"], row["strategy"], row["number"],
                 row["site"]):
        return await get_queue(conn, row["name"]), None

    owner = extensions.queue_owner(row["id"])
    if number != row["number"]:
        if row["number"] is not None:
            await extensions.release(conn, row["number"], owner)
        if number is not None:
            await extensions.allocate_exact(conn, cfg.extensions, number, owner, field="number")
    try:
        await sql.update(conn, row["id"], new_name, label, kind, strategy, number, site)
    except asyncpg.UniqueViolationError as exc:
        raise conflict_from(exc, new_name) from None
    if row["kind"] == "ticket" and kind != "ticket":
        await sql.clear_ticket_queue_refs(conn, row["name"])
    elif row["kind"] == "ticket" and new_name != row["name"]:
        await sql.rename_ticket_queue_refs(conn, row["name"], new_name)

    await audit.record(
        conn,
        actor,
        "update",
        "queue",
        row["id"],
        {
            "old": {k: row[k] for k in ("name", "label", "kind", "strategy", "number", "site")},
            "new": {"name": new_name, "label": label, "kind": kind, "strategy": strategy,
                    "number": number, "site": site},
        },
    )
    queue = await get_queue(conn, new_name)
    # The label is never seen by Asterisk: a label-only change bumps nothing.
    visible = "voice" in (row["kind"], kind) and after[:1] + after[2:] != (
        row["name"], row["kind"], row["strategy"], row["number"], row["site"])
    version = await config_state.bump(conn) if visible else None
    return queue, version


# How many logins a confirmation names (the counts are always complete).
NAMES_SHOWN = 20


async def delete_queue(
    conn: asyncpg.Connection, cfg: Config, name: str, actor: str, *, force: bool = False
) -> int | None:
    """Delete a queue with its memberships, free its number; agents whose default ticket
    queue it was lose that default. A queue with members (or that is someone's default
    ticket queue) is only deleted with force, else ConfirmationRequired says who would
    lose what. Returns the config version (voice) or None."""
    transaction.require(conn)
    row = await sql.lock(conn, _lookup_name(name))
    if row is None:
        raise _not_found(name)
    if not force:
        await _refuse_silent_loss(conn, row)
    await sql.delete(conn, row["id"])
    if row["number"] is not None:
        await extensions.release(conn, row["number"], extensions.queue_owner(row["id"]))
    if row["kind"] == "ticket":
        await sql.clear_ticket_queue_refs(conn, row["name"])
    await audit.record(
        conn,
        actor,
        "delete",
        "queue",
        row["id"],
        {
            "name": row["name"],
            "kind": row["kind"],
            "number": row["number"],
            "members": row["member_count"],
        },
    )
    return await config_state.bump(conn) if row["kind"] == "voice" else None


async def _refuse_silent_loss(conn: asyncpg.Connection, row: asyncpg.Record) -> None:
    members = [m["login"] for m in await sql.members(conn, row["id"])]
    defaults = await sql.ticket_queue_ref_logins(conn, row["name"]) if row["kind"] == "ticket" else []
    if not members and not defaults:
        return
    parts = []
    if members:
        parts.append(f"{len(members)} members ({_names(members)})")
    if defaults:
        parts.append(f"the default ticket queue of {len(defaults)} users ({_names(defaults)})")
    raise ConfirmationRequired(
        f"name: {row['kind']} queue {row['name']} has {' and is '.join(parts)}",
        "name",
        {"members": len(members), "member_logins": members[:NAMES_SHOWN],
         "default_ticket_queue_of": len(defaults), "default_ticket_queue_logins": defaults[:NAMES_SHOWN]},
    )


def _names(logins: list[str]) -> str:
    shown = ", ".join(logins[:NAMES_SHOWN])
    return shown + (", ..." if len(logins) > NAMES_SHOWN else "")


async def _lock_membership(
    conn: asyncpg.Connection, agent_id: int, lookup: str, queue_name: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The agent (locked) and the queue (share-locked) of a membership change, or
    NotFoundError. The agent first, then the queue: the same order as update_agent."""
    user = await agent_sql.lock(conn, agent_id)
    if user is None:
        raise NotFoundError(f"agent {agent_id} not found", "agent_id")
    queue = await sql.share(conn, lookup)
    if queue is None:
        raise _not_found(queue_name)
    return user, queue


async def set_member(
    conn: asyncpg.Connection, cfg: Config, queue_name: str, agent_id: int, penalty: int | None, actor: str
) -> tuple[QueueMember, int | None]:
    """Add an agent to a queue or change its penalty override (None: priority - 1).

    Returns the membership and the config version (voice queue, something changed) or None.
    """
    transaction.require(conn)
    if penalty is not None and not (0 <= penalty <= 1000):
        raise validation.Refused("penalty", "must be between 0 and 1000")
    lookup = _lookup_name(queue_name)
    user, queue = await _lock_membership(conn, agent_id, lookup, queue_name)
    if user["extension"] is None:
        raise validation.Refused(
            "agent_id", f"agent {agent_id} has no SIP account, so no queue memberships"
        )
    before = await sql.get_member(conn, queue["id"], agent_id)
    changed = before is None or before["penalty"] != penalty
    version = None
    if changed:
        await sql.upsert_member(conn, queue["id"], agent_id, penalty)
        await audit.record(
            conn,
            actor,
            "set_member",
            "queue",
            queue["id"],
            {"queue": queue["name"], "agent_id": agent_id, "penalty": penalty, "new": before is None},
        )
    member = next(
        _member_from_row(m) for m in await sql.members(conn, queue["id"]) if m["agent_id"] == agent_id
    )
    if changed and queue["kind"] == "voice":
        version = await config_state.bump(conn)
    return member, version


async def remove_member(
    conn: asyncpg.Connection, cfg: Config, queue_name: str, agent_id: int, actor: str
) -> int | None:
    """Remove an agent from a queue (NotFoundError if not a member); returns the config
    version (voice queue) or None."""
    transaction.require(conn)
    lookup = _lookup_name(queue_name)
    _, queue = await _lock_membership(conn, agent_id, lookup, queue_name)
    if not await sql.delete_member(conn, queue["id"], agent_id):
        raise NotFoundError(f"agent {agent_id} is not a member of {queue['name']}", "agent_id")
    await audit.record(
        conn,
        actor,
        "remove_member",
        "queue",
        queue["id"],
        {"queue": queue["name"], "agent_id": agent_id},
    )
    return await config_state.bump(conn) if queue["kind"] == "voice" else None
