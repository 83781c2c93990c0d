-- Chat core: users, channels, members, messages, reactions, read state, events.
-- Every table carries workspace_id and every key starts with it: a tenant is a prefix.

CREATE TABLE users (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id text NOT NULL,
    name text,
    image_url text,
    role text NOT NULL DEFAULT 'user',
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the user was deleted in "anonymize" mode: its tokens stop working.
    deleted_at timestamptz,
    last_active_at timestamptz,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE channels (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id text NOT NULL,
    type text NOT NULL,
    name text,
    data jsonb NOT NULL DEFAULT '{}',
    created_by text,
    -- For a dm: the two member ids, sorted and joined, so one pair has one channel.
    dm_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    last_message_id uuid,
    last_message_at timestamptz,
    PRIMARY KEY (workspace_id, id)
);

CREATE UNIQUE INDEX channels_dm_key_idx ON channels (workspace_id, dm_key) WHERE dm_key IS NOT NULL;
CREATE INDEX channels_public_idx ON channels (workspace_id, last_message_at DESC) WHERE type = 'public';

CREATE TABLE channel_members (
    workspace_id uuid NOT NULL,
    channel_id text NOT NULL,
    user_id text NOT NULL,
    role text NOT NULL DEFAULT 'member',
    joined_at timestamptz NOT NULL DEFAULT now(),
    -- Read state: everything up to and including this message has been read.
    last_read_message_id uuid,
    last_read_at timestamptz,
    PRIMARY KEY (workspace_id, channel_id, user_id),
    FOREIGN KEY (workspace_id, channel_id) REFERENCES channels (workspace_id, id) ON DELETE CASCADE
);

CREATE INDEX channel_members_user_idx ON channel_members (workspace_id, user_id);

CREATE TABLE messages (
    workspace_id uuid NOT NULL,
    id uuid NOT NULL,
    channel_id text NOT NULL,
    user_id text NOT NULL,
    text text NOT NULL DEFAULT '',
    parent_id uuid,
    reply_count integer NOT NULL DEFAULT 0,
    mentions text[] NOT NULL DEFAULT '{}',
    attachment_ids uuid[] NOT NULL DEFAULT '{}',
    data jsonb NOT NULL DEFAULT '{}',
    -- clock_timestamp(), not now(): messages of one transaction batch still sort in order.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    edited_at timestamptz,
    deleted_at timestamptz,
    search tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, channel_id) REFERENCES channels (workspace_id, id) ON DELETE CASCADE
);

CREATE INDEX messages_channel_idx ON messages (workspace_id, channel_id, created_at, id)
    WHERE parent_id IS NULL;
CREATE INDEX messages_thread_idx ON messages (workspace_id, parent_id, created_at, id)
    WHERE parent_id IS NOT NULL;
CREATE INDEX messages_search_idx ON messages USING gin (search);

CREATE TABLE reactions (
    workspace_id uuid NOT NULL,
    message_id uuid NOT NULL,
    type text NOT NULL,
    user_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, message_id, type, user_id),
    FOREIGN KEY (workspace_id, message_id) REFERENCES messages (workspace_id, id) ON DELETE CASCADE
);

-- The catch-up log. seq orders events by the id of the transaction that wrote them (then by
-- position within it), and readers only look below the oldest transaction still running, so a
-- reader that has seen seq N can never later find a new event below N (see db/events.py).
CREATE TABLE events (
    workspace_id uuid NOT NULL,
    seq bigint NOT NULL,
    type text NOT NULL,
    channel_id text,
    -- For events about one user (read.updated, member.removed): that user also sees it.
    user_id text,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, seq)
);

CREATE INDEX events_channel_idx ON events (workspace_id, channel_id, seq);
