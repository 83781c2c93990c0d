-- cariosan: no-transaction
-- Privacy and the user directory (issue 14, points 6 and 7). Built without blocking writes on
-- a big users table (see db/schema.py, NO_TRANSACTION_MARKER).

-- GET /v1/users?q=: a case-insensitive prefix match on the id and on the name of the active
-- users of one workspace. text_pattern_ops compares bytes, so a prefix is one index range
-- (db/users.py queries it with ~>=~ / ~<~ bounds, which a generic plan can use as well).
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_id_prefix_idx
    ON users (workspace_id, lower(id) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name_prefix_idx
    ON users (workspace_id, lower(name) text_pattern_ops) WHERE deleted_at IS NULL;

-- The export and the hard delete find a user's attachments by uploader without scanning
-- the workspace's.
CREATE INDEX CONCURRENTLY IF NOT EXISTS attachments_user_idx
    ON attachments (workspace_id, user_id) WHERE user_id IS NOT NULL;

-- The export and the hard delete find a user's messages (all channels, replies too).
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_user_idx ON messages (workspace_id, user_id);
