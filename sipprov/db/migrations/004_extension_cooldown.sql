-- A released extension is held back for `[extensions] cooldown_s` before it is handed
-- to someone else: the previous owner's phone may still be registered (its REGISTER
-- refreshes until it expires, or it keeps retrying) and would ring for the new owner.
-- released_at: when the number was last given back; released_owner: by whom (the same
-- owner may take it back at once - it is their phone).
ALTER TABLE extension_pool ADD COLUMN released_at timestamptz;
ALTER TABLE extension_pool ADD COLUMN released_owner text;
