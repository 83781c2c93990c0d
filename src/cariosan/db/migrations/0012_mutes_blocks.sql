-- Moderation (issue 14), mutes and blocks: a user's own, private choices about channels and
-- other users. A row names its user first, so each user's reads are a prefix of the key. Rows
-- naming a user go with it on a hard delete (the foreign keys cascade), and a channel's mutes
-- with the channel.

-- A member muted a channel (until expires_at, or for good when it is NULL): the channel does
-- not count in its total_unread. Expired rows are inert (reads compare with now()); muting
-- again overwrites them.
CREATE TABLE channel_mutes (
    workspace_id uuid NOT NULL,
    user_id text NOT NULL,
    channel_id text NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id, channel_id),
    FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, channel_id) REFERENCES channels (workspace_id, id) ON DELETE CASCADE
);

-- A user muted another one: the other's messages carry `muted: true` for it.
CREATE TABLE user_mutes (
    workspace_id uuid NOT NULL,
    user_id text NOT NULL,
    muted_id text NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id, muted_id),
    FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, muted_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE,
    CHECK (user_id <> muted_id)
);

-- A user blocked another one: no new dm between the two, and the blocked one's mentions of it
-- are dropped.
CREATE TABLE user_blocks (
    workspace_id uuid NOT NULL,
    user_id text NOT NULL,
    blocked_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workspace_id, user_id, blocked_id),
    FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, blocked_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE,
    CHECK (user_id <> blocked_id)
);

-- Who blocked the sender, among the users a message mentions; and the FK's reverse lookup.
CREATE INDEX user_blocks_blocked_idx ON user_blocks (workspace_id, blocked_id, user_id);
-- The block list, newest first (GET /v1/users/me/blocks).
CREATE INDEX user_blocks_list_idx ON user_blocks (workspace_id, user_id, created_at DESC, blocked_id DESC);
-- Reverse lookups for the cascades of a hard delete.
CREATE INDEX user_mutes_muted_idx ON user_mutes (workspace_id, muted_id);
CREATE INDEX channel_mutes_channel_idx ON channel_mutes (workspace_id, channel_id);
