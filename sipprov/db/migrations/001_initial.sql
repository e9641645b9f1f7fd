-- sipprov schema, version 1. Every table of the user record (DESIGN.md), the extension
-- pool, queues, the append-only audit log and the config version the applier follows.

CREATE TABLE roles (
    id           serial PRIMARY KEY,
    name         text NOT NULL,                 -- key used by the API: 'agent', 'admin', ...
    label        text NOT NULL,
    sip_allowed  boolean NOT NULL,              -- users of this role may get a SIP endpoint
    web_login    boolean NOT NULL,              -- users of this role may log in to the web
    calls_allowed boolean NOT NULL DEFAULT true,
    builtin      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_name_key ON roles (lower(name));

INSERT INTO roles (name, label, sip_allowed, web_login, calls_allowed, builtin) VALUES
    ('agent',       'Agent',       true,  true,  true,  true),
    ('admin',       'Admin',       true,  true,  true,  true),
    ('supervisor',  'Supervisor',  true,  true,  true,  true),
    ('sub-admin',   'Sub-admin',   true,  true,  true,  true),
    ('extension',   'Extension',   true,  false, true,  true),
    ('ticket-only', 'Ticket-only', false, true,  false, true),
    ('qa',          'QA',          false, true,  false, true),
    ('qa-lead',     'QA Lead',     false, true,  false, true),
    ('end-user',    'End-user',    false, true,  false, true);

CREATE TABLE departments (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX departments_name_key ON departments (lower(name));

CREATE TABLE account_types (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    max_users   integer CHECK (max_users IS NULL OR max_users >= 0),  -- NULL: no licence limit
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX account_types_name_key ON account_types (lower(name));
INSERT INTO account_types (name, max_users) VALUES ('standard', NULL);

-- One row per number of the configured range; a number is owned by at most one user or
-- queue. Allocation takes the lowest free row FOR UPDATE SKIP LOCKED, so concurrent
-- creates never get the same number and never wait on each other.
CREATE TABLE extension_pool (
    number      integer PRIMARY KEY CHECK (number >= 0),
    reserved    boolean NOT NULL DEFAULT false,
    owner       text                            -- 'user:<id>' or 'queue:<id>', NULL when free
);
CREATE UNIQUE INDEX extension_pool_owner_key ON extension_pool (owner) WHERE owner IS NOT NULL;
CREATE INDEX extension_pool_free_idx ON extension_pool (number) WHERE owner IS NULL AND NOT reserved;

CREATE TABLE users (
    id                    bigserial PRIMARY KEY,
    first_name            text NOT NULL,
    last_name             text NOT NULL,
    login                 text NOT NULL,
    email                 text NOT NULL,
    phone                 text,
    department_id         integer REFERENCES departments (id) ON DELETE SET NULL,
    role_id               integer NOT NULL REFERENCES roles (id),
    account_type_id       integer NOT NULL REFERENCES account_types (id),
    is_agent              boolean NOT NULL DEFAULT true,
    extension             integer UNIQUE REFERENCES extension_pool (number),
    caller_id_name        text NOT NULL,
    chat_name             text NOT NULL,
    outbound_allowed      boolean NOT NULL DEFAULT false,
    outbound_mode         text NOT NULL DEFAULT 'manual' CHECK (outbound_mode IN ('automatic', 'manual')),
    outbound_number       text,
    manual_dial_any       boolean NOT NULL DEFAULT false,
    default_ticket_queue  text,
    sender_email          text,
    sms_box               text,
    mute_mic              boolean NOT NULL DEFAULT false,
    autologin_phone       boolean NOT NULL DEFAULT false,
    force_password_change boolean NOT NULL DEFAULT false,
    priority              smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 1 AND 100),
    -- secrets: only slow hashes / digests, never plaintext
    web_password_hash     text,
    sip_ha1_md5           text,                 -- md5(username:realm:password)
    sip_ha1_sha256        text,                 -- sha256(username:realm:password)
    sip_realm             text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    created_by            text NOT NULL DEFAULT 'system',
    updated_by            text NOT NULL DEFAULT 'system'
);
CREATE UNIQUE INDEX users_login_key ON users (lower(login));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_role_idx ON users (role_id);
CREATE INDEX users_department_idx ON users (department_id);
CREATE INDEX users_account_type_idx ON users (account_type_id);
CREATE INDEX users_name_idx ON users (lower(last_name), lower(first_name));

CREATE TABLE avatars (
    user_id       bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    content_type  text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    data          bytea NOT NULL CHECK (octet_length(data) <= 8 * 1024 * 1024),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queues (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('voice', 'chat', 'ticket')),
    strategy    text NOT NULL DEFAULT 'ringall' CHECK (strategy IN (
                    'ringall', 'leastrecent', 'fewestcalls', 'random', 'rrmemory',
                    'rrordered', 'linear', 'wrandom')),
    number      integer UNIQUE REFERENCES extension_pool (number),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'voice' OR number IS NULL)
);
CREATE UNIQUE INDEX queues_name_key ON queues (lower(name));

CREATE TABLE queue_members (
    queue_id    integer NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    penalty     integer CHECK (penalty IS NULL OR penalty BETWEEN 0 AND 1000),  -- NULL: priority - 1
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_id, user_id)
);
CREATE INDEX queue_members_user_idx ON queue_members (user_id);

-- "Allow manual dialing of any number" puts the agent in the simplified campaign 999999.
CREATE TABLE campaign_members (
    campaign    integer NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign, user_id)
);

CREATE TABLE api_tokens (
    id           serial PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'readonly')),
    token_hash   text NOT NULL,                 -- sha256 of the secret part, hex
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX api_tokens_name_key ON api_tokens (lower(name)) WHERE revoked_at IS NULL;

-- Append-only: who changed what, when. Never a secret.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The config version: bumped in the same transaction as every change Asterisk sees;
-- the applier records what it has applied.
CREATE TABLE config_state (
    id                integer PRIMARY KEY CHECK (id = 1),
    version           bigint NOT NULL DEFAULT 0,
    applied_version   bigint NOT NULL DEFAULT 0,
    applied_at        timestamptz,
    last_error        text,
    last_error_at     timestamptz,
    last_apply_ms     integer
);
INSERT INTO config_state (id) VALUES (1);
