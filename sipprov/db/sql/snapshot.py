"""SQL for the render snapshot: one query per table (no N+1), run by snapshot.load()
inside one REPEATABLE READ read-only transaction so the version and the rows agree."""

from __future__ import annotations

from sipprov.agents import fields

# Who gets a SIP endpoint: a role that allows SIP, an active user flagged as an agent, with an
# extension and the digests needed for `password_digest` (the realm may be NULL:
# the configured realm is used then).
_RENDERABLE = (
    "r.sip_allowed AND u.is_agent AND u.active AND u.extension IS NOT NULL"
    " AND u.sip_ha1_md5 IS NOT NULL"
)

VERSION = "SELECT version FROM config_state WHERE id = 1"

# The agent's columns the renderer reads: id, the registry's `rendered` fields (by
# column name) and the SIP digests (apply/snapshot.py AgentConf has exactly these).
AGENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "u.id"),
    *((c, f"u.{c}") for c in fields.rendered_columns()),
    ("ha1_md5", "u.sip_ha1_md5"),
    ("ha1_sha256", "u.sip_ha1_sha256"),
    ("realm", "u.sip_realm"),
)
AGENTS = (
    "SELECT " + ", ".join(f"{expr} AS {name}" for name, expr in AGENT_COLUMNS)
    + " FROM users u JOIN roles r ON r.id = u.role_id"
    f" WHERE {_RENDERABLE}"
    " ORDER BY u.extension"
)

# The agent journal (migration 017): where this snapshot stands (its xmin: every
# transaction below it had ended) and how far the journal was pruned.
JOURNAL_POSITION = (
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
    " (SELECT pruned_below FROM agent_journal_state WHERE id = 1)"
)
# The users touched by transactions at or above a loader's last xmin (some were still
# running then: read again, never skipped).
JOURNAL_SINCE = "SELECT DISTINCT user_id FROM agent_journal WHERE xid >= $1"
# The renderable ones among them (the others are no longer rendered).
RENDERABLE_BY_ID = (
    "SELECT " + ", ".join(f"{expr} AS {name}" for name, expr in AGENT_COLUMNS)
    + " FROM users u JOIN roles r ON r.id = u.role_id"
    f" WHERE u.id = ANY($1::bigint[]) AND {_RENDERABLE}"
)
# What a loader consumed ($1: its xmin), and the mark that tells other loaders (whose
# last xmin is below it) to read everything once.
JOURNAL_PRUNE = (
    "WITH gone AS (DELETE FROM agent_journal WHERE xid < $1 RETURNING xid)"
    " UPDATE agent_journal_state SET pruned_below = GREATEST(pruned_below,"
    " (SELECT max(xid) + 1 FROM gone))"
    " WHERE id = 1 AND EXISTS (SELECT 1 FROM gone)"
)

VOICE_QUEUES = (
    "SELECT q.id, q.name, q.strategy, q.number, q.site FROM queues q"
    " WHERE q.kind = 'voice' ORDER BY q.name, q.id"
)

# Penalty: the membership's own, else derived from the agent's priority (lower
# priority number = tried first; app_queue tries lower penalties first).
VOICE_QUEUE_MEMBERS = (
    "SELECT qm.queue_id, u.extension, u.caller_id_name,"
    " COALESCE(qm.penalty, u.priority - 1) AS penalty"
    " FROM queue_members qm"
    " JOIN queues q ON q.id = qm.queue_id AND q.kind = 'voice'"
    " JOIN users u ON u.id = qm.user_id"
    " JOIN roles r ON r.id = u.role_id"
    f" WHERE {_RENDERABLE}"
    " ORDER BY qm.queue_id, u.extension"
)

# One apply at a time across processes (the service's applier, `sipprov apply`, a
# second service): a session-level advisory lock, tried in a loop with a deadline.
APPLY_LOCK_KEY = 7261002
TRY_APPLY_LOCK = f"SELECT pg_try_advisory_lock({APPLY_LOCK_KEY})"
APPLY_UNLOCK = f"SELECT pg_advisory_unlock({APPLY_LOCK_KEY})"
