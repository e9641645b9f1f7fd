-- Each user has a language (issue 16): what the credentials e-mail and the web console
-- speak to them. The service always writes it (the configured [defaults] language when
-- the admin gives none); existing users get English, the source language. The CHECK
-- keeps the column to the languages that have catalogs (sipprov/i18n/languages.py).
ALTER TABLE users ADD COLUMN language text NOT NULL DEFAULT 'en'
    CONSTRAINT users_language_check CHECK (language IN ('pl', 'vi', 'en'));
