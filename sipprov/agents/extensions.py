"""Extension numbers: the pool of the configured range, allocation and release.

The database guarantees uniqueness (one pool row per number, one owner per row, and
users.extension / queues.number are UNIQUE foreign keys into the pool), so concurrent
creates need no Python lock. Owners are written as `user:<id>` or `queue:<id>`.

All allocation functions must run inside the caller's transaction: a rollback gives the
number back.

Cooldown (`[extensions] cooldown_s`, default 24 h): a released number (agent deleted,
extension changed, queue number freed or left voice) is not handed to anyone else
until the cooldown has passed - the previous owner's phone may still be registered and
would ring for the new owner. Automatic allocation skips such numbers; an explicit
request for one is refused (409 `extension_cooling_down`, naming the field and when it
becomes free); the owner that released it may take it back at once. There is no
per-request override: an operator who must reuse a number now lowers cooldown_s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from sipprov.config import ExtensionsConfig
from sipprov.db.sql import extensions as sql
from sipprov.errors import ConflictError, ValidationError

log = logging.getLogger(__name__)

EXHAUSTED = "extension_pool_exhausted"
COOLING_DOWN = "extension_cooling_down"


def user_owner(user_id: int) -> str:
    return f"user:{user_id}"


def queue_owner(queue_id: int) -> str:
    return f"queue:{queue_id}"


@dataclass(frozen=True)
class SyncResult:
    changed: int
    deleted: int
    owned_outside_range: int


async def sync_pool(conn: asyncpg.Connection, ext: ExtensionsConfig) -> SyncResult:
    """Make the pool match the configured range and reserved numbers (idempotent).

    Numbers outside a narrowed range that are still owned stay until released (they
    are never handed out again); the count is logged so the operator can act.
    """
    reserved = sorted({n for n in ext.reserved if ext.first <= n <= ext.last})
    async with conn.transaction():
        changed, deleted, outside = await sql.sync(conn, ext.first, ext.last, reserved)
    if outside:
        log.warning(
            "%d extensions in use are outside the configured range %d-%d", outside, ext.first, ext.last
        )
    return SyncResult(changed, deleted, outside)


def exhausted(ext: ExtensionsConfig, *, free: int | None = None, needed: int | None = None) -> ConflictError:
    """The pool has no number left for a new user; for a batch, `free` numbers were
    left for `needed` new users (the ones past `free` get this error)."""
    batch = f" ({free} free for {needed} new agents)" if needed is not None else ""
    return ConflictError(
        f"extension: no free extension left in {ext.first}-{ext.last}{batch}", "extension", EXHAUSTED
    )


async def allocate(conn: asyncpg.Connection, ext: ExtensionsConfig, owner: str) -> int:
    """The lowest free number of the range; ConflictError(extension_pool_exhausted) if none."""
    number = await sql.allocate_lowest(conn, ext.first, ext.last, owner, ext.cooldown_s)
    if number is None:
        raise exhausted(ext)
    return number


async def allocate_exact(
    conn: asyncpg.Connection, ext: ExtensionsConfig, number: int, owner: str, field: str = "extension"
) -> int:
    """Claim a number the admin chose.

    Out of range or reserved -> ValidationError (the input is wrong);
    taken -> ConflictError (the input is fine, the number is in use);
    released less than cooldown_s ago by another owner -> ConflictError(extension_cooling_down).
    """
    if not (ext.first <= number <= ext.last):
        raise ValidationError(
            f"{field}: {number} is outside the configured range {ext.first}-{ext.last}", field
        )
    got = await sql.allocate_exact(conn, number, owner, ext.cooldown_s)
    if got is not None:
        return got
    row = await sql.lookup(conn, number, ext.cooldown_s)
    if row is None:
        # In the configured range but not in the pool: sync_pool has not run yet.
        raise ValidationError(f"{field}: {number} is not in the extension pool", field)
    if row["owner"] == owner:
        return number
    if row["reserved"]:
        raise ValidationError(f"{field}: {number} is reserved", field)
    if row["owner"] is None and row["cooling"]:
        raise cooling_down(field, number, row["available_at"])
    raise ConflictError(f"{field}: {number} is already in use", field, f"{field}_taken")


def cooling_down(field: str, number: int, available_at: datetime) -> ConflictError:
    """A number released recently: its old phone may still be registered."""
    when = available_at.isoformat(timespec="seconds")
    return ConflictError(
        f"{field}: {number} was released recently and is held back until {when} (the previous"
        " owner's phone may still be registered; [extensions] cooldown_s)",
        field,
        COOLING_DOWN,
    )


async def allocate_many(conn: asyncpg.Connection, ext: ExtensionsConfig, owners: list[str]) -> dict[str, int]:
    """One number per owner in one statement (lowest free first, in the owners' order).

    All or nothing: if the pool cannot serve every owner, ConflictError and the caller's
    transaction must roll back (the partial claims are undone with it).
    """
    if len(set(owners)) != len(owners):
        raise ValueError("owners must be distinct")
    if not owners:
        return {}
    got = await sql.allocate_many(conn, ext.first, ext.last, owners, ext.cooldown_s)
    if len(got) < len(owners):
        raise ConflictError(
            f"extension: only {len(got)} free extensions left in {ext.first}-{ext.last},"
            f" {len(owners)} needed",
            "extension",
            EXHAUSTED,
        )
    return got


async def release(conn: asyncpg.Connection, number: int, owner: str, *, hold: bool = True) -> None:
    """Give a number back to the pool (no-op if the owner does not hold it). It then
    rests for the cooldown; hold=False for a number that never reached a phone (claimed
    and given back within one failing create)."""
    await sql.release(conn, number, owner, hold)
