"""SQL for the failed-login counters (access/ratelimit.py): read, count one failure
atomically (two instances counting the same key never lose a failure), clear, prune.

`$now` is the caller's clock when it has one (tests), else NULL: the database's clock
then, one clock for every instance.
"""

from __future__ import annotations

_NOW = "COALESCE($1::double precision, extract(epoch FROM clock_timestamp()))"

# Forgotten: not locked any more and quiet for login_lockout_s.
_EXPIRED = "(n.now >= f.locked_until AND n.now - f.last_at >= $2)"

READ = (
    f"WITH n AS (SELECT {_NOW} AS now)"
    " SELECT n.now, f.kind, f.failures, f.last_at, f.locked_until"
    f" FROM n LEFT JOIN login_failures f ON (f.kind, f.key) IN"
    " (SELECT * FROM unnest($3::text[], $4::text[])) AND NOT " + _EXPIRED
)

# $1 now, $2 lockout seconds, $3 kind, $4 key, $5 failures that lock the key. In the
# update, excluded.last_at is now (the row the insert would have written).
_GONE = "(excluded.last_at >= f.locked_until AND excluded.last_at - f.last_at >= $2)"
_COUNT = f"(CASE WHEN {_GONE} THEN 1 ELSE f.failures + 1 END)"
FAILURE = (
    "INSERT INTO login_failures AS f (kind, key, failures, last_at, locked_until)"
    f" SELECT $3, $4, 1, n.now, CASE WHEN 1 >= $5 THEN n.now + $2 ELSE 0 END"
    f" FROM (SELECT {_NOW} AS now) n"
    f" ON CONFLICT (kind, key) DO UPDATE SET"
    f" failures = {_COUNT},"
    f" last_at = excluded.last_at,"
    f" locked_until = CASE WHEN {_COUNT} >= $5 THEN excluded.last_at + $2"
    f"  WHEN {_GONE} THEN 0 ELSE f.locked_until END"
)

SUCCESS = "DELETE FROM login_failures WHERE kind = 'login' AND key = $1"

PRUNE = (
    f"DELETE FROM login_failures f USING (SELECT {_NOW} AS now) n WHERE " + _EXPIRED
)
COUNT = "SELECT count(*) FROM login_failures"
