-- Queues get a display label in any letters (`Hỗ trợ`, `Obsługa klienta`, issue 13 item 3),
-- separate from their Asterisk name (ASCII: a queues.conf section / realtime key).
-- NULL shows the name (queues from before this migration, or rows written without one).
ALTER TABLE queues ADD COLUMN label text;

-- Name order (issue 13 item 3): first_name is always the given name, last_name the family
-- name; name_order only decides how the full name is shown. NULL follows the language
-- (vi: family_first, else given_first), so existing users need no backfill.
ALTER TABLE users ADD COLUMN name_order text
    CONSTRAINT users_name_order_check CHECK (name_order IN ('given_first', 'family_first'));
