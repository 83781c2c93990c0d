-- Moderation (issue 14, bans): a user banned from the whole workspace (channel_id NULL) or from
-- one channel, with a reason and an optional expiry. A ban whose expires_at has passed is no ban:
-- every check compares with now(), so nothing has to remove expired rows (a later ban of the
-- same scope replaces the row). A shadow ban lets the user send, and hides what it sends.

CREATE TABLE bans (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    user_id text NOT NULL,
    channel_id text,
    reason text,
    expires_at timestamptz,
    shadow boolean NOT NULL DEFAULT false,
    -- "backend" or the moderator's user id.
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workspace_id, id),
    -- A hard-deleted user takes its bans with it.
    FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, channel_id) REFERENCES channels (workspace_id, id)
        ON DELETE CASCADE
);

-- One ban per user and scope (the workspace, or a channel); also the per-user probe every send
-- makes in its membership query.
CREATE UNIQUE INDEX bans_scope_idx ON bans (workspace_id, user_id, (coalesce(channel_id, '')));
-- GET /v1/bans: newest first, the whole workspace or one channel.
CREATE INDEX bans_time_idx ON bans (workspace_id, created_at DESC, id DESC);
CREATE INDEX bans_channel_idx ON bans (workspace_id, channel_id, created_at DESC, id DESC)
    WHERE channel_id IS NOT NULL;

-- Messages sent under a shadow ban: shown to their author only (and to the backend).
ALTER TABLE messages ADD COLUMN shadow boolean NOT NULL DEFAULT false;
