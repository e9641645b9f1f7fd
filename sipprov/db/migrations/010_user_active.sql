-- Accounts that stop without being deleted (issue 13 item 7): a deactivated user
-- keeps their row, extension and queue memberships (the number stays theirs, it is
-- not released to the pool), but cannot log in to the web and their phone cannot
-- register: the render snapshot (sipprov.db.sql.snapshot) and the realtime views
-- below leave them out, so both backends drop the endpoint and the applier ends its
-- registrations as it does for a deleted agent. Reactivating restores all of it
-- with the same SIP digests.
ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;

-- The realtime view of migration 005, now also requiring an active user (same
-- columns, so the dependent views and grants stay as they are).
CREATE OR REPLACE VIEW asterisk.agents AS
SELECT u.id, u.extension::text AS ext, u.caller_id_name, u.sip_ha1_md5, u.sip_ha1_sha256,
       COALESCE(u.sip_realm, s.realm) AS realm, u.outbound_allowed, u.outbound_number,
       u.mute_mic, u.autologin_phone, u.priority, s.transport, s.internal_context,
       s.outbound_context, s.codecs, s.direct_media, s.rtp_symmetric, s.force_rport,
       s.rewrite_contact, s.max_contacts, s.remove_existing
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
   -- what the applier holds out of Asterisk (migration 003) stays out here too
   AND NOT EXISTS (SELECT 1 FROM apply_quarantine aq WHERE aq.kind = 'agent' AND aq.id = u.id);
