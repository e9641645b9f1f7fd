-- The web console's CSV import jobs (sipprov/web/imports.py), visible to every
-- `sipprov serve` instance behind a load balancer: the upload may land on one
-- instance, the preview, the confirmation, the progress and the download on others.
--
-- Nothing personal or secret is readable here: the uploaded file, the preview and the
-- result (logins, e-mails, changed values, reasons) and the generated passwords are
-- Fernet tokens (*_enc) under a random key per job that only the admin's browser holds
-- (an HttpOnly cookie scoped to the job's path); the database never sees the key.
--
-- state: preview (dry run shown) -> running (an instance applies it and holds the
-- session advisory lock (7261019, lock_key) while it does) -> done | failed; running
-- with nobody holding the lock -> interrupted (the instance died). committed_at is set
-- in the import's own transaction, so an interrupted job without it changed nothing.
CREATE TABLE import_jobs (
    id text PRIMARY KEY,
    lock_key integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename text NOT NULL,
    continue_on_error boolean NOT NULL,
    state text NOT NULL DEFAULT 'preview'
        CONSTRAINT import_jobs_state_check
        CHECK (state IN ('preview', 'running', 'done', 'failed', 'interrupted')),
    runner text,
    step text NOT NULL DEFAULT '',
    done integer NOT NULL DEFAULT 0,
    total integer,
    upload_enc bytea,
    preview_enc bytea,
    result_enc bytea,
    credentials_enc bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    committed_at timestamptz,
    finished_at timestamptz,
    expires_at timestamptz NOT NULL
);
CREATE INDEX import_jobs_expires_at ON import_jobs (expires_at);
