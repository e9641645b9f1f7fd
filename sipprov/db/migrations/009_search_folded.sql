-- Search ignores diacritics, word by word (issue 13 item 4): `Nguyen Van` finds
-- `Nguyễn Văn An` whatever the word order. Every word of a query must be in the folded
-- (sipprov_fold, migration 008) name, login and e-mail; this trigram index serves each
-- `LIKE '%word%'`, so a search stays an index scan at 100,000 users. pg_trgm is a
-- trusted extension (PostgreSQL 13+): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX users_search_folded_idx ON users USING gin (
    sipprov_fold(first_name || ' ' || last_name || ' ' || login || ' ' || email) gin_trgm_ops);
