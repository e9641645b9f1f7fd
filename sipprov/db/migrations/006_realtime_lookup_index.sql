-- Asterisk looks agents up by id (`SELECT * FROM ps_auths WHERE id = '101'`), and the
-- views' id is users.extension as text: without an index on that expression every
-- lookup scanned every user (and checked every value rule), so a REGISTER cost O(N)
-- (~1 s per REGISTER at 10,000 agents, measured). With it, one index probe.
CREATE INDEX users_extension_text_idx ON users ((extension::text));
