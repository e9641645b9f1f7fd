"""SQL of the shared registrations (asterisk.ps_contacts, migration 013): Asterisk writes
the rows (res_sorcery_realtime); sipprov reads them and removes those of agents whose
credentials went away."""

from __future__ import annotations

import asyncpg

# A contact's id is "<aor>;@<hash>", stored by res_config_pgsql with the ';' encoded
# as "^3B" (a raw ';' would split the value when read back): match it by the AOR's
# prefix (index ps_contacts_id_prefix_idx).
ID_SEPARATOR = "^3B@"
DELETE_FOR_AORS = (
    "DELETE FROM asterisk.ps_contacts"
    " WHERE id LIKE ANY (SELECT a || '^3B@%' FROM unnest($1::text[]) AS a)"
    " RETURNING id"
)

FOR_AOR = (
    "SELECT id, uri, user_agent, expiration_time, reg_server, path"
    "  FROM asterisk.ps_contacts WHERE id LIKE $1 || '^3B@%' ORDER BY id"
)

# Agents (numeric AORs) with an unexpired registration, per node that took it
# (reg_server: the node's systemname).
REGISTERED_PER_SERVER = (
    "SELECT coalesce(reg_server, '') AS reg_server,"
    " count(DISTINCT split_part(id, '^3B@', 1)) AS agents"
    "  FROM asterisk.ps_contacts"
    " WHERE split_part(id, '^3B@', 1) ~ '^[0-9]+$'"
    "   AND (expiration_time IS NULL OR expiration_time > extract(epoch FROM now()))"
    " GROUP BY 1"
)


async def registered_per_server(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    return {r["reg_server"]: r["agents"] for r in await conn.fetch(REGISTERED_PER_SERVER)}


async def delete_for_aors(conn: asyncpg.Connection, aors: list[str]) -> int:
    """Remove every contact of these AORs; how many were removed."""
    if not aors:
        return 0
    return len(await conn.fetch(DELETE_FOR_AORS, aors))


async def for_aor(conn: asyncpg.Connection, aor: str) -> list[asyncpg.Record]:
    return await conn.fetch(FOR_AOR, aor)
