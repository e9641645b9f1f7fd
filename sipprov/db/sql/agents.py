"""SQL for users/agents: the agent record as the API shows it, and its mutations.

The read queries never select a password hash or SIP digest (only whether they exist);
the few that need a secret (login check, rotation) select it explicitly.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from sipprov.agents import fields

# The agent as returned by the API: lookups by name, memberships and campaigns inlined.
AGENT_SELECT = f"""
SELECT u.id, {fields.select_list()},
       COALESCE((
           SELECT jsonb_agg(jsonb_build_object(
                      'name', q.name, 'kind', q.kind,
                      'penalty', COALESCE(m.penalty, u.priority - 1),
                      'penalty_override', m.penalty)
                  ORDER BY q.kind, lower(q.name))
           FROM queue_members m JOIN queues q ON q.id = m.queue_id
           WHERE m.user_id = u.id), '[]'::jsonb)::text AS queues,
       ARRAY(SELECT c.campaign FROM campaign_members c WHERE c.user_id = u.id
             ORDER BY c.campaign) AS campaigns,
       (u.sip_ha1_md5 IS NOT NULL) AS has_sip,
       EXISTS (SELECT 1 FROM avatars av WHERE av.user_id = u.id) AS has_avatar,
       (SELECT jsonb_build_object('reason', aq.reason, 'since', aq.since)
          FROM apply_quarantine aq WHERE aq.kind = 'agent' AND aq.id = u.id)::text AS quarantine,
       u.created_at, u.updated_at, u.created_by, u.updated_by,
       lower(u.last_name) AS sort_last, lower(u.first_name) AS sort_first
FROM users u
JOIN roles r ON r.id = u.role_id
JOIN account_types a ON a.id = u.account_type_id
LEFT JOIN departments d ON d.id = u.department_id
"""

GET = AGENT_SELECT + "WHERE u.id = $1"
FIND = AGENT_SELECT + "WHERE lower(u.login) = lower($1) OR lower(u.email) = lower($1) ORDER BY u.id LIMIT 1"

# Keyset pagination in name order; $6-$8 is the last row of the previous page. Every
# word of a query ($10 ...: LIKE patterns, folded here, added by search()) must be in the
# folded name/login/e-mail (sipprov_fold, migration 008, and its trigram index, 009), or the
# whole query is the extension ($2).
SEARCH_TEXT = "sipprov_fold(u.first_name || ' ' || u.last_name || ' ' || u.login || ' ' || u.email)"
SEARCH = (
    AGENT_SELECT
    + """
WHERE ({words} OR u.extension = $2)
  AND ($3::text IS NULL OR lower(r.name) = lower($3))
  AND ($4::text IS NULL OR lower(d.name) = lower($4))
  AND (NOT $5::boolean OR u.is_agent)
  AND ($6::text IS NULL OR (lower(u.last_name), lower(u.first_name), u.id) > ($6, $7, $8::bigint))
  AND ($9::text IS NULL OR EXISTS (
        SELECT 1 FROM queue_members qm JOIN queues qq ON qq.id = qm.queue_id
        WHERE qm.user_id = u.id AND lower(qq.name) = lower($9)))
  AND ($10::boolean IS NULL OR u.active = $10)
ORDER BY lower(u.last_name), lower(u.first_name), u.id
LIMIT $1
"""
)
SEARCH_MAX_WORDS = 8

NEXT_ID = "SELECT nextval(pg_get_serial_sequence('users', 'id'))"

# Columns a create writes, in INSERT order (the registry's stored fields, secrets, actors).
INSERT_COLUMNS = fields.insert_columns()
INSERT = (
    f"INSERT INTO users ({', '.join(INSERT_COLUMNS)}) VALUES ("
    + ", ".join(f"${i}" for i in range(1, len(INSERT_COLUMNS) + 1))
    + ")"
)

# A derived login: a taken one inserts nothing (no savepoint needed to try the next
# candidate); any other unique violation still raises.
INSERT_UNLESS_LOGIN_TAKEN = INSERT + " ON CONFLICT ((lower(login))) DO NOTHING RETURNING id"

# Columns an update may set (besides updated_at/updated_by, always set).
UPDATE_COLUMNS = frozenset(INSERT_COLUMNS) - {"id", "created_by", "updated_by"}

# The stored row, secrets included, locked for a change.
LOCK = """
SELECT u.*, r.name AS role_name, r.sip_allowed, r.web_login
FROM users u JOIN roles r ON r.id = u.role_id
WHERE u.id = $1
FOR UPDATE OF u
"""
DELETE = "DELETE FROM users WHERE id = $1"

# Derived logins of one base are serialised on this lock, so suffixes are handed out in
# order without piling up unique violations (explicit logins are still caught by the
# unique index and retried in a savepoint).
LOGIN_LOCK_NAMESPACE = 7261003
LOGIN_LOCK = f"SELECT pg_advisory_xact_lock({LOGIN_LOCK_NAMESPACE}, hashtext($1))"
LOGINS_LIKE = "SELECT lower(login) FROM users WHERE lower(login) LIKE $1 ESCAPE '\\'"

ADD_CAMPAIGN = """
INSERT INTO campaign_members (campaign, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
"""
REMOVE_CAMPAIGN = "DELETE FROM campaign_members WHERE campaign = $1 AND user_id = $2"

# Login check: the only read of the web password hash.
AUTH = """
SELECT u.id, u.login, u.email, u.web_password_hash, u.force_password_change, r.web_login,
       u.active
FROM users u JOIN roles r ON r.id = u.role_id
WHERE lower(u.login) = lower($1)
"""
SET_WEB_PASSWORD = """
UPDATE users SET web_password_hash = $2,
    force_password_change = COALESCE($3, force_password_change),
    updated_at = now(), updated_by = $4
WHERE id = $1
"""
SET_SIP = """
UPDATE users SET sip_ha1_md5 = $2, sip_ha1_sha256 = $3, sip_realm = $4,
    updated_at = now(), updated_by = $5
WHERE id = $1
"""


def like_prefix(text: str) -> str:
    """A LIKE pattern matching strings that start with `text` literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def like_contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


async def get(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, user_id)


async def find(conn: asyncpg.Connection | asyncpg.Pool, login_or_email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND, login_or_email)


async def search(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    words: list[str],
    extension: int | None,
    role: str | None,
    department: str | None,
    queue: str | None,
    agents_only: bool,
    after: tuple[str, str, int] | None,
    limit: int,
    active: bool | None = None,
) -> list[asyncpg.Record]:
    """Each of `words` must appear (diacritics and case ignored), or q is the extension."""
    if len(words) > SEARCH_MAX_WORDS:
        raise ValueError(f"at most {SEARCH_MAX_WORDS} words")
    last, first, last_id = after if after else (None, None, None)
    if words:
        each = [f"{SEARCH_TEXT} LIKE sipprov_fold(${11 + i})" for i in range(len(words))]
        cond = "(" + " AND ".join(each) + ")"
    else:
        cond = "($2::integer IS NULL)"
    query = SEARCH.format(words=cond)
    patterns = [like_contains(w) for w in words]
    return await conn.fetch(
        query, limit, extension, role, department, agents_only, last, first, last_id, queue, active,
        *patterns
    )


async def next_id(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(NEXT_ID)


async def insert(conn: asyncpg.Connection, values: dict[str, Any]) -> None:
    await conn.execute(INSERT, *(values[c] for c in INSERT_COLUMNS))


async def insert_unless_login_taken(conn: asyncpg.Connection, values: dict[str, Any]) -> bool:
    """Insert the row; False (nothing inserted) when its login is taken."""
    inserted = await conn.fetchval(INSERT_UNLESS_LOGIN_TAKEN, *(values[c] for c in INSERT_COLUMNS))
    return inserted is not None


async def lock(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK, user_id)


async def update(conn: asyncpg.Connection, user_id: int, changes: dict[str, Any], actor: str) -> None:
    """Set the given columns (names checked against UPDATE_COLUMNS, values bound)."""
    unknown = set(changes) - UPDATE_COLUMNS
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    columns = sorted(changes)
    sets = [f"{col} = ${i}" for i, col in enumerate(columns, start=2)]
    n = len(columns) + 2
    query = (
        f"UPDATE users SET {', '.join(sets)}, updated_at = now(), updated_by = ${n} WHERE id = $1"
    )
    await conn.execute(query, user_id, *(changes[c] for c in columns), actor)


async def delete(conn: asyncpg.Connection, user_id: int) -> None:
    await conn.execute(DELETE, user_id)


async def lock_login_base(conn: asyncpg.Connection, base: str) -> None:
    await conn.execute(LOGIN_LOCK, base.lower())


async def logins_like(conn: asyncpg.Connection, base: str) -> set[str]:
    return {r[0] for r in await conn.fetch(LOGINS_LIKE, like_prefix(base.lower()))}


async def add_campaign(conn: asyncpg.Connection, campaign: int, user_id: int) -> None:
    await conn.execute(ADD_CAMPAIGN, campaign, user_id)


async def remove_campaign(conn: asyncpg.Connection, campaign: int, user_id: int) -> None:
    await conn.execute(REMOVE_CAMPAIGN, campaign, user_id)


async def auth_row(conn: asyncpg.Connection | asyncpg.Pool, login: str) -> asyncpg.Record | None:
    return await conn.fetchrow(AUTH, login)


async def set_web_password(
    conn: asyncpg.Connection, user_id: int, password_hash: str | None, force_change: bool | None, actor: str
) -> None:
    await conn.execute(SET_WEB_PASSWORD, user_id, password_hash, force_change, actor)


async def set_sip(
    conn: asyncpg.Connection, user_id: int, md5: str, sha256: str, realm: str, actor: str
) -> None:
    await conn.execute(SET_SIP, user_id, md5, sha256, realm, actor)


# Agents whose outbound permission reaches Asterisk (a SIP account): /status reports them
# when no outbound route is configured.
OUTBOUND_ALLOWED_COUNT = "SELECT count(*) FROM users WHERE outbound_allowed AND extension IS NOT NULL"


async def outbound_allowed_count(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return await conn.fetchval(OUTBOUND_ALLOWED_COUNT)
