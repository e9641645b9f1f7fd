-- The realtime backend (issue 11): what Asterisk reads from PostgreSQL through
-- res_config_pgsql + res_sorcery_realtime. Everything Asterisk sees is a VIEW over
-- sipprov's own tables, in a schema of its own, so it can never drift from them; the
-- role Asterisk logs in as (sipprov_asterisk) can read only these views.

-- The operator's settings the rows depend on (transport, contexts, codecs, ...): they
-- live in sipprov's configuration file, so the service copies them here at start
-- (sipprov.db.sql.realtime.UPDATE_SETTINGS). The CHECKs are the renderer's rules: a
-- value that could become config (';' splits a realtime value in res_config_pgsql)
-- is refused by the database itself.
CREATE TABLE realtime_settings (
    id               integer PRIMARY KEY CHECK (id = 1),
    -- true while asterisk.backend = "realtime": with the files backend the views are
    -- empty, so an Asterisk that maps both wizards (the development PBX) never sees an
    -- agent twice, and switching backends needs no restart (docs/apply.md)
    enabled          boolean NOT NULL DEFAULT false,
    transport        text NOT NULL DEFAULT 'transport-udp'
                     CHECK (transport ~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$'),
    internal_context text NOT NULL DEFAULT 'sipprov-internal'
                     CHECK (internal_context ~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$'),
    outbound_context text NOT NULL DEFAULT 'sipprov-outbound'
                     CHECK (outbound_context ~ '^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$'),
    codecs           text NOT NULL DEFAULT 'ulaw,alaw,g722,opus'
                     CHECK (codecs ~ '^[a-z0-9_]{1,32}(,[a-z0-9_]{1,32})*$'),
    direct_media     boolean NOT NULL DEFAULT false,
    rtp_symmetric    boolean NOT NULL DEFAULT true,
    force_rport      boolean NOT NULL DEFAULT true,
    rewrite_contact  boolean NOT NULL DEFAULT true,
    max_contacts     integer NOT NULL DEFAULT 1 CHECK (max_contacts BETWEEN 1 AND 100),
    remove_existing  boolean NOT NULL DEFAULT true,
    realm            text NOT NULL DEFAULT 'sipprov'
                     CHECK (realm ~ '^[^[:cntrl:]";#\[\]\\$<>,]{1,255}$'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO realtime_settings (id) VALUES (1);

CREATE SCHEMA asterisk;

-- The agents Asterisk may know: the render snapshot's rule (sipprov.db.sql.snapshot
-- _RENDERABLE) plus the renderer's value rules, so a row that slipped past
-- validation is kept out of Asterisk instead of becoming config.
CREATE VIEW asterisk.agents AS
SELECT u.id, u.extension::text AS ext, u.caller_id_name, u.sip_ha1_md5, u.sip_ha1_sha256,
       COALESCE(u.sip_realm, s.realm) AS realm, u.outbound_allowed, u.outbound_number,
       u.mute_mic, u.autologin_phone, u.priority, s.transport, s.internal_context,
       s.outbound_context, s.codecs, s.direct_media, s.rtp_symmetric, s.force_rport,
       s.rewrite_contact, s.max_contacts, s.remove_existing
  FROM users u
  JOIN roles r ON r.id = u.role_id
 CROSS JOIN realtime_settings s
 WHERE s.id = 1 AND s.enabled
   AND r.sip_allowed AND u.is_agent AND u.extension IS NOT NULL
   AND u.sip_ha1_md5 ~ '^[0-9a-f]{32}$'
   AND (u.sip_ha1_sha256 IS NULL OR u.sip_ha1_sha256 ~ '^[0-9a-f]{64}$')
   AND (u.sip_realm IS NULL OR u.sip_realm ~ '^[^[:cntrl:]";#\[\]\\$<>,]{1,255}$')
   AND u.caller_id_name ~ '^[^[:cntrl:]";#\[\]\\$<>]*$' AND length(u.caller_id_name) <= 1024
   AND (u.outbound_number IS NULL OR u.outbound_number ~ '^\+?[0-9]{1,32}$')
   -- what the applier holds out of Asterisk (migration 003) stays out here too
   AND NOT EXISTS (SELECT 1 FROM apply_quarantine aq WHERE aq.kind = 'agent' AND aq.id = u.id);

-- Columns as in Asterisk's contrib/ast-db-manage (config): only those we set.
CREATE VIEW asterisk.ps_endpoints AS
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
       -- res_config_pgsql splits a value on ';' into one variable per part
       'SIPPROV_MUTE_MIC=' || CASE WHEN a.mute_mic THEN 'yes' ELSE 'no' END
           || ';SIPPROV_AUTOLOGIN=' || CASE WHEN a.autologin_phone THEN 'yes' ELSE 'no' END
           || CASE WHEN a.outbound_allowed AND a.outbound_number IS NOT NULL
                   THEN ';SIPPROV_OUTBOUND_NUMBER=' || a.outbound_number ELSE '' END
           AS set_var
  FROM asterisk.agents a;

-- Digest only: no plaintext column exists. SHA-256 works only when both
-- supported_algorithms_uas and _uac are set (else every REGISTER gets 500).
CREATE VIEW asterisk.ps_auths AS
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
           AS supported_algorithms_uac
  FROM asterisk.agents a;

-- `contact` must exist (a reload asks `... WHERE contact != ''`); dynamic contacts
-- (registrations) stay in Asterisk's astdb.
CREATE VIEW asterisk.ps_aors AS
SELECT a.ext AS id,
       a.max_contacts,
       CASE WHEN a.remove_existing THEN 'yes' ELSE 'no' END AS remove_existing,
       ''::text AS contact
  FROM asterisk.agents a;

-- Realtime members of the queues defined in queues.conf: a membership change is seen
-- by app_queue without a reload. Their device state is a Custom: one that sipprov
-- keeps from registration and call events (an endpoint created after Asterisk
-- started would otherwise stay Unavailable to app_queue). Penalty as in the render (membership's own, else
-- priority - 1). uniqueid identifies the member to app_queue.
CREATE VIEW asterisk.queue_members AS
SELECT q.id::text || '-' || a.id::text AS uniqueid,
       q.name AS queue_name,
       'PJSIP/' || a.ext AS interface,
       a.caller_id_name AS membername,
       -- kept by sipprov (sipprov/apply/phones.py says why PJSIP/<ext> is not enough)
       'Custom:sipprov' || a.ext AS state_interface,
       COALESCE(qm.penalty, a.priority - 1) AS penalty,
       0 AS paused,
       ''::text AS reason_paused,
       0 AS wrapuptime,
       0 AS ringinuse
  FROM queue_members qm
  JOIN queues q ON q.id = qm.queue_id AND q.kind = 'voice'
  JOIN asterisk.agents a ON a.id = qm.user_id
 WHERE q.name ~ '^[^[:cntrl:]";#\[\]\\$<>,()|{}]{1,79}$'
   AND a.caller_id_name !~ '[,|]'
   AND NOT EXISTS (SELECT 1 FROM apply_quarantine aq WHERE aq.kind = 'queue' AND aq.id = q.id);

-- Queue definitions stay in queues.conf (rare changes). app_queue only refreshes the
-- realtime members of a queues.conf queue when the `queues` family is configured
-- (QueueStatus, a caller joining): so it is, and finds no realtime queue here.
CREATE VIEW asterisk.queues AS
SELECT NULL::text AS name, NULL::text AS strategy WHERE false;

-- Asterisk's own role: it reads the views above and nothing else. Roles belong to the
-- cluster, not to one database; creating it needs CREATEROLE (an operator whose
-- sipprov user has none creates it: docs/apply.md). LOGIN and the password are set by
-- the service (sipprov.apply.realtime_role) from asterisk.realtime_db_password.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sipprov_asterisk') THEN
        CREATE ROLE sipprov_asterisk NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOINHERIT CONNECTION LIMIT 10;
    END IF;
    -- res_config_pgsql names tables without a schema
    ALTER ROLE sipprov_asterisk SET search_path = asterisk;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot create role sipprov_asterisk (no CREATEROLE): create it yourself';
END $$;

REVOKE ALL ON SCHEMA asterisk FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA asterisk FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sipprov_asterisk') THEN
        GRANT USAGE ON SCHEMA asterisk TO sipprov_asterisk;
        GRANT SELECT ON asterisk.ps_endpoints, asterisk.ps_auths, asterisk.ps_aors,
                        asterisk.queue_members, asterisk.queues TO sipprov_asterisk;
    END IF;
END $$;
