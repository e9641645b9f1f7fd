"""SQL for the applier leader's lease (apply/leadership.py): a session-level advisory
lock, distinct from the per-apply lock (snapshot.APPLY_LOCK_KEY), which still keeps the
leader's applies and `sipprov apply` from interleaving."""

from __future__ import annotations

LEADER_LOCK_KEY = 7261015

TRY_LOCK = f"SELECT pg_try_advisory_lock({LEADER_LOCK_KEY})"

# Does this session hold the lease? (a cheap round trip that proves the session lives)
HOLDS = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
    f" AND classid = 0 AND objid = {LEADER_LOCK_KEY} AND objsubid = 1"
    " AND pid = pg_backend_pid() AND granted)"
)

# Who holds it: the application_name of the holding session (on this database).
HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.classid = 0"
    f" AND l.objid = {LEADER_LOCK_KEY} AND l.objsubid = 1 AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
