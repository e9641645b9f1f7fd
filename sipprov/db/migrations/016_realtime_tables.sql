-- What Asterisk reads on every REGISTER becomes plain tables, kept in the same
-- transaction as the change by triggers (issue 11, REGISTER storm).
--
-- Why: res_config_pgsql sends every lookup (`SELECT * FROM ps_auths WHERE id = '101'`)
-- over ONE connection with the simple query protocol, so each one is parsed and planned
-- again. Through the views of migration 005 (a join of users, roles, the settings row
-- and the quarantine, plus the value rules) a lookup cost ~0.33 ms of server time, and
-- a REGISTER makes six to nine of them: Asterisk sustained about 100 REGISTER/s and a
-- storm at 500/s registered under 20% of 5,000 agents. The same lookups on a table
-- with a primary key cost ~0.05 ms, and the same storm at 1,000/s registered all of
-- them (docs/benchmarks.md).
--
-- The views stay as the definition (schema asterisk_src, which Asterisk cannot read);
-- the tables are their materialisation, rewritten row by row in the transaction that
-- changes a user, a role, the settings or the quarantine. So the tables cannot drift:
-- a change and what Asterisk reads of it commit together or not at all.

CREATE SCHEMA asterisk_src;
REVOKE ALL ON SCHEMA asterisk_src FROM PUBLIC;

ALTER VIEW asterisk.agents SET SCHEMA asterisk_src;
ALTER VIEW asterisk.ps_endpoints SET SCHEMA asterisk_src;
ALTER VIEW asterisk.ps_auths SET SCHEMA asterisk_src;
ALTER VIEW asterisk.ps_aors SET SCHEMA asterisk_src;
REVOKE ALL ON ALL TABLES IN SCHEMA asterisk_src FROM PUBLIC;

CREATE TABLE asterisk.ps_endpoints (LIKE asterisk_src.ps_endpoints, PRIMARY KEY (id));
CREATE TABLE asterisk.ps_auths (LIKE asterisk_src.ps_auths, PRIMARY KEY (id));
CREATE TABLE asterisk.ps_aors (LIKE asterisk_src.ps_aors, PRIMARY KEY (id));

-- Make the tables match the views for the given ids (NULL: every row): delete the rows
-- that differ or went away, insert the missing ones. A row that did not change is not
-- rewritten (no dead tuples for an agent's unrelated edits). Static statements, so
-- PL/pgSQL keeps their plans (planning the views anew cost ~2 ms per create). A few
-- ids (a create, an edit) are refreshed one by one with equality lookups, whose plan is
-- an index probe whatever the statistics say; = ANY(ids) with a generic plan made
-- right after a bulk import scanned the whole view (6.7 s per agent at 100,000).
-- Many ids are planned for their array instead (EXECUTE).
-- A migration that changes a view's columns changes its table the same way.
CREATE FUNCTION asterisk_src.refresh(ids text[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    one text;
BEGIN
    IF ids IS NULL THEN
        DELETE FROM asterisk.ps_endpoints t WHERE NOT EXISTS (
            SELECT 1 FROM asterisk_src.ps_endpoints v WHERE v.id = t.id AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*));
        INSERT INTO asterisk.ps_endpoints SELECT v.* FROM asterisk_src.ps_endpoints v
         WHERE NOT EXISTS (SELECT 1 FROM asterisk.ps_endpoints t WHERE t.id = v.id)
            ON CONFLICT (id) DO NOTHING;
        DELETE FROM asterisk.ps_auths t WHERE NOT EXISTS (
            SELECT 1 FROM asterisk_src.ps_auths v WHERE v.id = t.id AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*));
        INSERT INTO asterisk.ps_auths SELECT v.* FROM asterisk_src.ps_auths v
         WHERE NOT EXISTS (SELECT 1 FROM asterisk.ps_auths t WHERE t.id = v.id)
            ON CONFLICT (id) DO NOTHING;
        DELETE FROM asterisk.ps_aors t WHERE NOT EXISTS (
            SELECT 1 FROM asterisk_src.ps_aors v WHERE v.id = t.id AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*));
        INSERT INTO asterisk.ps_aors SELECT v.* FROM asterisk_src.ps_aors v
         WHERE NOT EXISTS (SELECT 1 FROM asterisk.ps_aors t WHERE t.id = v.id)
            ON CONFLICT (id) DO NOTHING;
    ELSIF cardinality(ids) <= 64 THEN
        FOREACH one IN ARRAY ids LOOP
            DELETE FROM asterisk.ps_endpoints t WHERE t.id = one AND NOT EXISTS (
                SELECT 1 FROM asterisk_src.ps_endpoints v WHERE v.id = one AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*));
            INSERT INTO asterisk.ps_endpoints SELECT v.* FROM asterisk_src.ps_endpoints v
             WHERE v.id = one AND NOT EXISTS (SELECT 1 FROM asterisk.ps_endpoints t WHERE t.id = one)
                ON CONFLICT (id) DO NOTHING;
            DELETE FROM asterisk.ps_auths t WHERE t.id = one AND NOT EXISTS (
                SELECT 1 FROM asterisk_src.ps_auths v WHERE v.id = one AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*));
            INSERT INTO asterisk.ps_auths SELECT v.* FROM asterisk_src.ps_auths v
             WHERE v.id = one AND NOT EXISTS (SELECT 1 FROM asterisk.ps_auths t WHERE t.id = one)
                ON CONFLICT (id) DO NOTHING;
            DELETE FROM asterisk.ps_aors t WHERE t.id = one AND NOT EXISTS (
                SELECT 1 FROM asterisk_src.ps_aors v WHERE v.id = one AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*));
            INSERT INTO asterisk.ps_aors SELECT v.* FROM asterisk_src.ps_aors v
             WHERE v.id = one AND NOT EXISTS (SELECT 1 FROM asterisk.ps_aors t WHERE t.id = one)
                ON CONFLICT (id) DO NOTHING;
        END LOOP;
    ELSE
        -- many (a bulk import, a role): planned for this array (EXECUTE), so the
        -- planner sees its size and joins by hash instead of probing row by row
        FOREACH one IN ARRAY ARRAY['ps_endpoints', 'ps_auths', 'ps_aors'] LOOP
            EXECUTE format(
                'DELETE FROM asterisk.%1$I t USING unnest($1) AS k(id) WHERE t.id = k.id'
                ' AND NOT EXISTS (SELECT 1 FROM asterisk_src.%1$I v WHERE v.id = t.id'
                ' AND ROW(v.*) IS NOT DISTINCT FROM ROW(t.*))', one) USING ids;
            EXECUTE format(
                'INSERT INTO asterisk.%1$I SELECT v.* FROM asterisk_src.%1$I v'
                ' JOIN unnest($1) AS k(id) ON v.id = k.id'
                ' WHERE NOT EXISTS (SELECT 1 FROM asterisk.%1$I t WHERE t.id = v.id)'
                ' ON CONFLICT (id) DO NOTHING', one) USING ids;
        END LOOP;
    END IF;
END $$;

-- users: the extensions a statement touched, before and after (an extension that
-- changed leaves its old number and takes the new one).
CREATE FUNCTION asterisk_src.users_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM asterisk_src.refresh(ARRAY(
            SELECT extension::text FROM new_rows WHERE extension IS NOT NULL));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM asterisk_src.refresh(ARRAY(
            SELECT extension::text FROM old_rows WHERE extension IS NOT NULL));
    ELSE
        PERFORM asterisk_src.refresh(ARRAY(
            SELECT extension::text FROM new_rows WHERE extension IS NOT NULL
            UNION
            SELECT extension::text FROM old_rows WHERE extension IS NOT NULL));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER asterisk_users_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.users_changed();
CREATE TRIGGER asterisk_users_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.users_changed();
CREATE TRIGGER asterisk_users_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.users_changed();

-- roles: sip_allowed decides whether the role's agents have a SIP account at all.
CREATE FUNCTION asterisk_src.roles_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM asterisk_src.refresh(ARRAY(
        SELECT u.extension::text FROM users u JOIN new_rows r ON r.id = u.role_id
         WHERE u.extension IS NOT NULL));
    RETURN NULL;
END $$;

CREATE TRIGGER asterisk_roles_update AFTER UPDATE ON roles
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.roles_changed();

-- The quarantine (migration 003) holds an agent out of Asterisk, and releases it.
CREATE FUNCTION asterisk_src.quarantine_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM asterisk_src.refresh(ARRAY(
            SELECT u.extension::text FROM users u JOIN new_rows q ON q.id = u.id
             WHERE q.kind = 'agent' AND u.extension IS NOT NULL));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM asterisk_src.refresh(ARRAY(
            SELECT u.extension::text FROM users u JOIN old_rows q ON q.id = u.id
             WHERE q.kind = 'agent' AND u.extension IS NOT NULL));
    ELSE
        PERFORM asterisk_src.refresh(ARRAY(
            SELECT u.extension::text FROM users u
              JOIN (SELECT kind, id FROM new_rows UNION SELECT kind, id FROM old_rows) q
                ON q.id = u.id
             WHERE q.kind = 'agent' AND u.extension IS NOT NULL));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER asterisk_quarantine_insert AFTER INSERT ON apply_quarantine
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.quarantine_changed();
CREATE TRIGGER asterisk_quarantine_update AFTER UPDATE ON apply_quarantine
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.quarantine_changed();
CREATE TRIGGER asterisk_quarantine_delete AFTER DELETE ON apply_quarantine
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.quarantine_changed();

-- The settings row (transport, contexts, codecs, enabled ...) is in every row. The
-- service writes it at every start, changing nothing most times: refresh only when a
-- row was really updated (a statement trigger fires for zero rows too).
CREATE FUNCTION asterisk_src.settings_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM asterisk_src.refresh(NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER asterisk_settings_update AFTER UPDATE ON realtime_settings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION asterisk_src.settings_changed();

SELECT asterisk_src.refresh(NULL);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sipprov_asterisk') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA asterisk_src FROM sipprov_asterisk;
        GRANT SELECT ON asterisk.ps_endpoints, asterisk.ps_auths, asterisk.ps_aors
            TO sipprov_asterisk;
    END IF;
END $$;

-- Sites (migration 015, docs/scale-out.md): the tables carry each row's site and show
-- a node only the rows it serves (row-level security on asterisk.node_site()).
-- (Conditional: a database migrated to 016 before 015 existed gets them from 015.)
DO $$
BEGIN
    IF to_regprocedure('asterisk.site_rules()') IS NOT NULL THEN
        PERFORM asterisk.site_rules();
    END IF;
END $$;
