-- Revocation (issue 11): a user's tokens issued before `tokens_valid_after` are refused, and
-- JWT secrets a newer configuration dropped are refused by every node.

-- NULL on the rows that exist before this migration: their tokens stay valid (no logout at
-- upgrade). Rows inserted from now on get the insert time, so a user deleted and created again
-- with the same id never inherits a token minted before.
ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz;
ALTER TABLE users ALTER COLUMN tokens_valid_after SET DEFAULT clock_timestamp();

-- The JWT secrets servers of this deployment were started with, by SHA-256 fingerprint (never
-- the secret). A secret is retired when a server starts with a configuration that no longer
-- holds it and whose current secret is newer; every server then refuses its tokens.
CREATE TABLE jwt_keys (
    fingerprint text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at timestamptz
);
