-- Which agents changed, for the applier (issue 11: an apply costs O(changes), not
-- O(agents)).
--
-- Why: to find what changed, the applier read every renderable agent's row version
-- (users.xmin) on every apply: ~11 ms at 10,000 agents and ~0.1 s at 100,000, per
-- change, plus the Python work over every agent that followed. The journal names the
-- users a statement touched, written by triggers in the same transaction as the
-- change, so it cannot miss one.
--
-- Reading it (apply/snapshot.py SnapshotLoader): a loader remembers the xmin of the
-- snapshot it last read (every transaction below it had ended), and next time reads the
-- rows whose xid is at or above it: the transactions that were still running then are
-- among them, so a change committed out of order is never skipped; a row read twice
-- only re-reads one agent. Pruning (agent_journal_prune) deletes old rows and raises
-- `pruned_below` past the largest xid it deleted: a loader whose xmin is below that
-- may have lost rows and reads everything instead.

CREATE TABLE agent_journal (
    seq     bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    xid     bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_journal_xid ON agent_journal (xid);

CREATE TABLE agent_journal_state (
    id           int PRIMARY KEY CHECK (id = 1),
    pruned_below bigint NOT NULL DEFAULT 0
);
INSERT INTO agent_journal_state (id) VALUES (1);

-- users: every row a statement touched (its id does not change; a delete is read as
-- "no longer renderable").
CREATE FUNCTION agent_journal_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO agent_journal (user_id) SELECT id FROM old_rows;
    ELSE
        INSERT INTO agent_journal (user_id) SELECT id FROM new_rows;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER journal_users_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agent_journal_users();
CREATE TRIGGER journal_users_update AFTER UPDATE ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agent_journal_users();
CREATE TRIGGER journal_users_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agent_journal_users();

-- roles: sip_allowed decides whether the role's agents are rendered at all.
CREATE FUNCTION agent_journal_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agent_journal (user_id)
    SELECT u.id FROM users u
      JOIN new_rows n ON n.id = u.role_id
      JOIN old_rows o ON o.id = n.id
     WHERE n.sip_allowed IS DISTINCT FROM o.sip_allowed;
    RETURN NULL;
END $$;

CREATE TRIGGER journal_roles_update AFTER UPDATE ON roles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agent_journal_roles();
