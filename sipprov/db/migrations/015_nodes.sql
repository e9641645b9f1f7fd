-- Several Asterisk nodes driven by one sipprov (issue 15, docs/scale-out.md).
--
-- Written to work before AND after migration 016 (which moves the realtime views to
-- asterisk_src and materialises ps_endpoints/ps_auths/ps_aors as tables): a database
-- that already had 016 when this file appeared gets it after 016.

-- What each node holds: the applier records, per node, the last version it applied
-- and verified there, whether its AMI answered at the last try and the last error.
-- config_state.applied_version stays the version applied on every reachable node
-- (what ?wait=applied waits for); a node that was down catches up from its own row.
CREATE TABLE node_state (
    name             text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$'),
    site             text,
    applied_version  bigint NOT NULL DEFAULT 0,
    applied_at       timestamptz,
    reachable        boolean,
    checked_at       timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    registered       integer
);

-- Sites: an agent or voice queue with a site is served only by the nodes of that
-- site; without one (NULL), by every node. Plain words: the site is compared in SQL
-- and a node's site is written into its res_pgsql.conf (dbappname).
ALTER TABLE users ADD COLUMN site text
    CONSTRAINT users_site_check CHECK (site ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$');
ALTER TABLE queues ADD COLUMN site text
    CONSTRAINT queues_site_check CHECK (site ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$');

-- The ONE place a node's site enters what Asterisk reads: the node's Asterisk
-- connects with res_pgsql.conf `dbappname = sipprov-site:<site>`, which PostgreSQL
-- keeps as the session's application_name. NULL (any other name): a node without a
-- site, which serves only what has no site. Not a security boundary (every node logs
-- in as the same read-only role): it selects what each node serves.
CREATE FUNCTION asterisk.node_site() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN current_setting('application_name', true)
                           ~ '^sipprov-site:[A-Za-z0-9][A-Za-z0-9_-]{0,31}$'
                      THEN substr(current_setting('application_name', true), 14) END $$;
GRANT EXECUTE ON FUNCTION asterisk.node_site() TO PUBLIC;

-- The rows Asterisk reads carry their site (a trailing `site` column: Asterisk's
-- sorcery ignores columns it does not know), and row-level security shows a node
-- only the rows it serves. The table owner (sipprov, whose triggers keep the tables)
-- is not subject to it. Called here and by migration 016 once its tables exist.
CREATE FUNCTION asterisk.site_rules() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rel text;
BEGIN
    FOREACH rel IN ARRAY ARRAY['ps_endpoints', 'ps_auths', 'ps_aors'] LOOP
        IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'asterisk' AND c.relname = rel AND c.relkind = 'r') THEN
            EXECUTE format('ALTER TABLE asterisk.%I ADD COLUMN IF NOT EXISTS site text', rel);
            EXECUTE format('ALTER TABLE asterisk.%I ENABLE ROW LEVEL SECURITY', rel);
            EXECUTE format('DROP POLICY IF EXISTS node_site ON asterisk.%I', rel);
            EXECUTE format('CREATE POLICY node_site ON asterisk.%I FOR SELECT USING '
                           '(site IS NULL OR site = asterisk.node_site())', rel);
        END IF;
    END LOOP;
END $$;

DO $body$
DECLARE
    -- where the definitions live: asterisk (views read directly) or asterisk_src
    -- (migration 016: the definitions of the tables)
    src text := CASE WHEN to_regclass('asterisk_src.agents') IS NOT NULL
                     THEN 'asterisk_src' ELSE 'asterisk' END;
BEGIN
    -- migration 010's agents plus the site (last column; no site rule here: the
    -- tables of 016 are written by sipprov's own session)
    EXECUTE format($v$
CREATE OR REPLACE VIEW %1$I.agents AS
SELECT u.id, u.extension::text AS ext, u.caller_id_name, u.sip_ha1_md5, u.sip_ha1_sha256,
       COALESCE(u.sip_realm, s.realm) AS realm, u.outbound_allowed, u.outbound_number,
       u.mute_mic, u.autologin_phone, u.priority, s.transport, s.internal_context,
       s.outbound_context, s.codecs, s.direct_media, s.rtp_symmetric, s.force_rport,
       s.rewrite_contact, s.max_contacts, s.remove_existing, u.site
  FROM users u
  JOIN roles r ON r.id = u.role_id
 CROSS JOIN realtime_settings s
 WHERE s.id = 1 AND s.enabled
   AND r.sip_allowed AND u.is_agent AND u.active AND u.extension IS NOT NULL
   AND u.sip_ha1_md5 ~ '^[0-9a-f]{32}$'
   AND (u.sip_ha1_sha256 IS NULL OR u.sip_ha1_sha256 ~ '^[0-9a-f]{64}$')
   AND (u.sip_realm IS NULL OR u.sip_realm ~ '^[^[:cntrl:]";#\[\]\\$<>,]{1,255}$')
   AND u.caller_id_name ~ '^[^[:cntrl:]";#\[\]\\$<>]*$' AND length(u.caller_id_name) <= 1024
   AND (u.outbound_number IS NULL OR u.outbound_number ~ '^\+?[0-9]{1,32}$')
   AND NOT EXISTS (SELECT 1 FROM apply_quarantine aq WHERE aq.kind = 'agent' AND aq.id = u.id)
$v$, src);

    -- migration 005's ps_endpoints and ps_auths, 013's ps_aors, each plus the site
    EXECUTE format($v$
CREATE OR REPLACE VIEW %1$I.ps_endpoints AS
SELECT a.ext AS id,
       a.transport,
       a.ext AS aors,
       a.ext AS auth,
       CASE WHEN a.outbound_allowed THEN a.outbound_context ELSE a.internal_context END
           AS context,
       'all'::text AS disallow,
       a.codecs AS allow,
       CASE WHEN a.direct_media THEN 'yes' ELSE 'no' END AS direct_media,
       CASE WHEN a.rtp_symmetric THEN 'yes' ELSE 'no' END AS rtp_symmetric,
       CASE WHEN a.force_rport THEN 'yes' ELSE 'no' END AS force_rport,
       CASE WHEN a.rewrite_contact THEN 'yes' ELSE 'no' END AS rewrite_contact,
       '"' || a.caller_id_name || '" <' || a.ext || '>' AS callerid,
       'SIPPROV_MUTE_MIC=' || CASE WHEN a.mute_mic THEN 'yes' ELSE 'no' END
           || ';SIPPROV_AUTOLOGIN=' || CASE WHEN a.autologin_phone THEN 'yes' ELSE 'no' END
           || CASE WHEN a.outbound_allowed AND a.outbound_number IS NOT NULL
                   THEN ';SIPPROV_OUTBOUND_NUMBER=' || a.outbound_number ELSE '' END
           AS set_var,
       a.site
  FROM %1$I.agents a
$v$, src);
    EXECUTE format($v$
CREATE OR REPLACE VIEW %1$I.ps_auths AS
SELECT a.ext AS id,
       'digest'::text AS auth_type,
       a.ext AS username,
       a.realm,
       'MD5:' || a.sip_ha1_md5
           || CASE WHEN a.sip_ha1_sha256 IS NOT NULL THEN ',SHA-256:' || a.sip_ha1_sha256
                   ELSE '' END AS password_digest,
       CASE WHEN a.sip_ha1_sha256 IS NOT NULL THEN 'md5,sha-256' ELSE 'md5' END
           AS supported_algorithms_uas,
       CASE WHEN a.sip_ha1_sha256 IS NOT NULL THEN 'md5,sha-256' ELSE 'md5' END
           AS supported_algorithms_uac,
       a.site
  FROM %1$I.agents a
$v$, src);
    EXECUTE format($v$
CREATE OR REPLACE VIEW %1$I.ps_aors AS
SELECT a.ext AS id,
       a.max_contacts,
       CASE WHEN a.remove_existing THEN 'yes' ELSE 'no' END AS remove_existing,
       ''::text AS contact,
       CASE WHEN s.support_path THEN 'yes' ELSE 'no' END AS support_path,
       a.site
  FROM %1$I.agents a
 CROSS JOIN realtime_settings s
 WHERE s.id = 1
$v$, src);

    -- queue members stay a view read by Asterisk's session: the site rule is applied
    -- here, for the queue and for the member
    EXECUTE format($v$
CREATE OR REPLACE VIEW asterisk.queue_members AS
SELECT q.id::text || '-' || a.id::text AS uniqueid,
       q.name AS queue_name,
       'PJSIP/' || a.ext AS interface,
       a.caller_id_name AS membername,
       'Custom:sipprov' || a.ext AS state_interface,
       COALESCE(qm.penalty, a.priority - 1) AS penalty,
       0 AS paused,
       ''::text AS reason_paused,
       0 AS wrapuptime,
       0 AS ringinuse
  FROM queue_members qm
  JOIN queues q ON q.id = qm.queue_id AND q.kind = 'voice'
  JOIN %1$I.agents a ON a.id = qm.user_id
 WHERE q.name ~ '^[^[:cntrl:]";#\[\]\\$<>,()|{}]{1,79}$'
   AND a.caller_id_name !~ '[,|]'
   AND (q.site IS NULL OR q.site = asterisk.node_site())
   AND (a.site IS NULL OR a.site = asterisk.node_site())
   AND NOT EXISTS (SELECT 1 FROM apply_quarantine aq WHERE aq.kind = 'queue' AND aq.id = q.id)
$v$, src);

    -- After 016: the tables get the column and the rule now (before it, 016 creates
    -- them with the column and calls site_rules() itself).
    IF src = 'asterisk_src' THEN
        PERFORM asterisk.site_rules();
        EXECUTE 'SELECT asterisk_src.refresh(NULL)';
    END IF;
END $body$;
