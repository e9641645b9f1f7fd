"""Extension numbers: the pool of the configured range, allocation and release.

The database guarantees uniqueness (one pool row per number, one owner per row, and
users.extension / queues.number are UNIQUE foreign keys into the pool), so concurrent
creates need no Python lock. Owners are written as `user:<id>` or `queue:<id>`.

All allocation functions must run inside the caller's transaction: a rollback gives the
number back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from sipprov.config import ExtensionsConfig
from sipprov.db.sql import extensions as sql
from sipprov.errors import ConflictError, ValidationError

log = logging.getLogger(__name__)

EXHAUSTED = "extension_pool_exhausted"


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
    number = await sql.allocate_lowest(conn, ext.first, ext.last, owner)
    if number is None:
        raise exhausted(ext)
    return number


async def allocate_exact(
    conn: asyncpg.Connection, ext: ExtensionsConfig, number: int, owner: str, field: str = "extension"
) -> int:
    """Claim a number the admin chose.

    Out of range or reserved -> ValidationError (the input is wrong);
    taken -> ConflictError (the input is fine, the number is in use).
    """
    if not (ext.first <= number <= ext.last):
        raise ValidationError(
            f"{field}: {number} is outside the configured range {ext.first}-{ext.last}", field
        )
    got = await sql.allocate_exact(conn, number, owner)
    if got is not None:
        return got
    row = await sql.lookup(conn, number)
    if row is None:
        # In the configured range but not in the pool: sync_pool has not run yet.
        raise ValidationError(f"{field}: {number} is not in the extension pool", field)
    if row["owner"] == owner:
        return number
    if row["reserved"]:
        raise ValidationError(f"{field}: {number} is reserved", field)
    raise ConflictError(f"{field}: {number} is already in use", field, f"{field}_taken")


async def allocate_many(conn: asyncpg.Connection, ext: ExtensionsConfig, owners: list[str]) -> dict[str, int]:
    """One number per owner in one statement (lowest free first, in the owners' order).

    All or nothing: if the pool cannot serve every owner, ConflictError and the caller's
    transaction must roll back (the partial claims are undone with it).
    """
    if len(set(owners)) != len(owners):
        raise ValueError("owners must be distinct")
    if not owners:
        return {}
    got = await sql.allocate_many(conn, ext.first, ext.last, owners)
    if len(got) < len(owners):
        raise ConflictError(
            f"extension: only {len(got)} free extensions left in {ext.first}-{ext.last},"
            f" {len(owners)} needed",
            "extension",
            EXHAUSTED,
        )
    return got


async def release(conn: asyncpg.Connection, number: int, owner: str) -> None:
    """Give a number back to the pool (no-op if the owner does not hold it)."""
    await sql.release(conn, number, owner)
