-- Several Asterisk nodes behind a SIP front (issue 15, docs/scale-out.md).
--
-- 1. Shared contacts: with asterisk.shared_contacts, every node stores registrations
--    here (sorcery.conf `contact = realtime,ps_contacts`) instead of in its own astdb,
--    so a call placed on any node reaches a phone registered through any other.
--    Columns and types as Asterisk's contrib/ast-db-manage creates them (Asterisk 22:
--    ps_contacts with qualify_2xx_only); only Asterisk writes the rows, sipprov reads
--    them and deletes those of agents whose credentials went away.
-- 2. support_path: with a front that adds a Path header (Kamailio), the AORs must say
--    support_path=yes so Asterisk sends calls back through the front.

CREATE TYPE asterisk.ast_bool_values AS ENUM
    ('0', '1', 'off', 'on', 'false', 'true', 'no', 'yes');

CREATE TABLE asterisk.ps_contacts (
    id                   varchar(255) PRIMARY KEY,   -- "<aor>;@<hash of the uri>"
    uri                  varchar(511),
    expiration_time      bigint,
    qualify_frequency    integer,
    outbound_proxy       varchar(255),
    path                 text,
    user_agent           varchar(255),
    qualify_timeout      double precision,
    reg_server           varchar(255),               -- the node's systemname
    authenticate_qualify asterisk.ast_bool_values,
    via_addr             varchar(40),
    via_port             integer,
    call_id              varchar(255),
    endpoint             varchar(255),
    prune_on_boot        asterisk.ast_bool_values,
    qualify_2xx_only     asterisk.ast_bool_values
);
-- An AOR's contacts are read with `id LIKE '<aor>^3B@%'` (res_config_pgsql stores ";" as
-- "^3B") on every REGISTER and call;
-- the registrar's expiry sweep asks `expiration_time <= <now>`.
CREATE INDEX ps_contacts_id_prefix_idx ON asterisk.ps_contacts (id text_pattern_ops);
CREATE INDEX ps_contacts_expiration_idx ON asterisk.ps_contacts (expiration_time);
CREATE INDEX ps_contacts_endpoint_idx ON asterisk.ps_contacts (endpoint);

ALTER TABLE realtime_settings ADD COLUMN support_path boolean NOT NULL DEFAULT false;

CREATE OR REPLACE VIEW asterisk.ps_aors AS
SELECT a.ext AS id,
       a.max_contacts,
       CASE WHEN a.remove_existing THEN 'yes' ELSE 'no' END AS remove_existing,
       ''::text AS contact,
       CASE WHEN s.support_path THEN 'yes' ELSE 'no' END AS support_path
  FROM asterisk.agents a
 CROSS JOIN realtime_settings s
 WHERE s.id = 1;

REVOKE ALL ON asterisk.ps_contacts FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sipprov_asterisk') THEN
        -- the one relation Asterisk writes
        GRANT SELECT, INSERT, UPDATE, DELETE ON asterisk.ps_contacts TO sipprov_asterisk;
        GRANT USAGE ON TYPE asterisk.ast_bool_values TO sipprov_asterisk;
        GRANT SELECT ON asterisk.ps_aors TO sipprov_asterisk;
    END IF;
END $$;
