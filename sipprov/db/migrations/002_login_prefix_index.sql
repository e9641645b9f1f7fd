-- Derived logins take the lowest free suffix (jan.kowalski, jan.kowalski2, ...): the
-- agent service looks up `lower(login) LIKE 'jan.kowalski%'`. text_pattern_ops makes that
-- prefix search an index range scan whatever the database collation (users_login_key,
-- the unique index, only serves it under the C collation); without it every create
-- scans the whole users table.
CREATE INDEX users_login_prefix_idx ON users (lower(login) text_pattern_ops);
