"""SQL of the realtime backend: the settings row the asterisk.* views read (migration
005), and the login of the role Asterisk uses."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class ViewSettings:
    """The configuration values the asterisk.* views need (realtime_settings)."""

    enabled: bool
    transport: str
    internal_context: str
    outbound_context: str
    codecs: str
    direct_media: bool
    rtp_symmetric: bool
    force_rport: bool
    rewrite_contact: bool
    max_contacts: int
    remove_existing: bool
    realm: str
    support_path: bool


# Only writes (and so only wakes Asterisk's next lookup) when something differs.
UPDATE_SETTINGS = (
    "UPDATE realtime_settings SET enabled = $1, transport = $2, internal_context = $3,"
    " outbound_context = $4, codecs = $5, direct_media = $6, rtp_symmetric = $7,"
    " force_rport = $8, rewrite_contact = $9, max_contacts = $10, remove_existing = $11,"
    " realm = $12, support_path = $13, updated_at = now()"
    " WHERE id = 1 AND (enabled, transport, internal_context, outbound_context, codecs,"
    " direct_media, rtp_symmetric, force_rport, rewrite_contact, max_contacts,"
    " remove_existing, realm, support_path) IS DISTINCT FROM"
    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    " RETURNING id"
)

ENABLED = "SELECT enabled FROM realtime_settings WHERE id = 1"

# ALTER ROLE takes no parameters: the statement is built by the server (format %I/%L)
# and run in the same DO block, so the password never passes through Python strings
# of SQL. It needs CREATEROLE; without it the operator sets the password.
SET_ROLE_LOGIN = (
    "SELECT set_config('sipprov.rt_user', $1, true),"
    " set_config('sipprov.rt_password', $2, true)"
)
SET_ROLE_LOGIN_DO = (
    "DO $$ BEGIN EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L',"
    " current_setting('sipprov.rt_user'), current_setting('sipprov.rt_password'));"
    " END $$"
)
ROLE_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)"


async def update_settings(conn: asyncpg.Connection, s: ViewSettings) -> bool:
    """Write the settings row; True when it changed."""
    row = await conn.fetchval(
        UPDATE_SETTINGS, s.enabled, s.transport, s.internal_context, s.outbound_context,
        s.codecs, s.direct_media, s.rtp_symmetric, s.force_rport, s.rewrite_contact,
        s.max_contacts, s.remove_existing, s.realm, s.support_path)
    return row is not None


async def enabled(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(ENABLED))


async def set_role_login(conn: asyncpg.Connection, user: str, password: str) -> bool:
    """LOGIN + password for Asterisk's role; False when the role does not exist."""
    if not await conn.fetchval(ROLE_EXISTS, user):
        return False
    async with conn.transaction():
        await conn.execute(SET_ROLE_LOGIN, user, password)
        await conn.execute(SET_ROLE_LOGIN_DO)
    return True
