-- Queues get a display label in any letters (`Hỗ trợ`, `Obsługa klienta`, issue 13 item 3),
-- separate from their Asterisk name (ASCII: a queues.conf section / realtime key).
-- NULL shows the name (queues from before this migration, or rows written without one).
ALTER TABLE queues ADD COLUMN label text;
