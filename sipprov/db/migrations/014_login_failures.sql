-- Failed web logins (issue 15): the rate-limit and lockout state lives here, not in one
-- process's memory, so it holds across several `sipprov serve` instances and restarts.
-- One row per counted key: kind 'login' or 'address', key = sha256 of the value (a
-- password typed into the login field is not kept readable). Times are seconds since
-- the epoch, from the database's clock (one clock for every instance).
CREATE TABLE login_failures (
    kind text NOT NULL CONSTRAINT login_failures_kind_check CHECK (kind IN ('login', 'address')),
    key text NOT NULL,
    failures integer NOT NULL,
    last_at double precision NOT NULL,
    locked_until double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
);
CREATE INDEX login_failures_last_at ON login_failures (last_at);
