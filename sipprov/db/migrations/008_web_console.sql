-- Web console sessions (issue 14). The browser holds a random session id in an
-- HttpOnly cookie; only its sha256 is stored here, so a database dump logs nobody in.
-- Each session carries its own CSRF token (checked on every POST) and the language the
-- user picked in the console. Deleting a user ends their sessions.
CREATE TABLE web_sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    language     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_user_idx ON web_sessions (user_id);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- Search "with or without diacritics" (issue 14): `Lukasz` finds `Łukasz`, `tran thi`
-- finds `Trần Thị`. Lower-case, then every Latin letter with a diacritic to its ASCII
-- base letter - the same single-letter folding as sipprov.agents.naming.fold_ascii
-- (the table is generated from it; tests/test_web_search.py checks they agree). Plain
-- translate() rather than the unaccent extension: a managed PostgreSQL may refuse
-- CREATE EXTENSION.
CREATE FUNCTION sipprov_fold(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
AS $fold$ SELECT translate(lower(value),
    'àáâãäåçèéêëìíîïðñòóôõöøùúûüýÿāăąćĉċčďđēĕėęěĝğġģĥħĩīĭįıĵķĸĺļľŀłńņňŉŋōŏőŕŗřśŝşšţťŧũūŭůűųŵŷźżžſƒơưǎǐǒǔǖǘǚǜǟǡǧǩǫǭǰǵǹǻȁȃȅȇȉȋȍȏȑȓȕȗșțȟȧȩȫȭȯȱȳḁḃḅḇḉḋḍḏḑḓḕḗḙḛḝḟḡḣḥḧḩḫḭḯḱḳḵḷḹḻḽḿṁṃṅṇṉṋṍṏṑṓṕṗṙṛṝṟṡṣṥṧṩṫṭṯṱṳṵṷṹṻṽṿẁẃẅẇẉẋẍẏẑẓẕẖẗẘẙẚẛạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ',
    'aaaaaaceeeeiiiidnoooooouuuuyyaaaccccddeeeeegggghhiiiiijkklllllnnnnnooorrrsssstttuuuuuuwyzzzsfouaiouuuuuaagkoojgnaaaeeiioorruusthaeooooyabbbcdddddeeeeefghhhhhiikkkllllmmmnnnnoooopprrrrsssssttttuuuuuvvwwwwwxxyzzzhtwyasaaaaaaaaaaaaeeeeeeeeiioooooooooooouuuuuuuyyyy') $fold$;

-- One-time links a softphone (Linphone) fetches its account from, shown as a QR code
-- after a SIP password rotation. Only the sha256 of the link's token is stored; a link
-- works once and for 15 minutes. It serves the MD5 HA1 (already stored), never the
-- password itself.
CREATE TABLE provisioning_tokens (
    token_hash   bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX provisioning_tokens_user_idx ON provisioning_tokens (user_id);
