-- cariosan: no-transaction
-- Moderation (issue 14, flags): reports of messages and users, and the review queue.
-- No transaction: the events index below is built CONCURRENTLY (the log is the biggest table);
-- every statement is idempotent, so a file stopped half-way is simply run again.

CREATE TABLE IF NOT EXISTS flags (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    -- A message flag names the message (and its channel); a user flag only the user.
    message_id uuid,
    channel_id text,
    -- The user the flag is about: the flagged user, or the flagged message's author.
    user_id text NOT NULL,
    -- A user id, or "backend" (the API secret acting as itself, e.g. an automatic filter).
    reporter_id text NOT NULL,
    reason text,
    status text NOT NULL DEFAULT 'open',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolution text,
    resolution_reason text,
    resolved_by text,
    resolved_at timestamptz,
    PRIMARY KEY (workspace_id, id),
    -- A hard delete of the message or of the user takes its flags with it.
    FOREIGN KEY (workspace_id, message_id) REFERENCES messages (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, user_id) REFERENCES users (workspace_id, id) ON DELETE CASCADE
);

-- One open flag per reporter and message (or user): flagging again returns the open one.
CREATE UNIQUE INDEX IF NOT EXISTS flags_open_message_idx
    ON flags (workspace_id, message_id, reporter_id) WHERE status = 'open' AND message_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS flags_open_user_idx
    ON flags (workspace_id, user_id, reporter_id) WHERE status = 'open' AND message_id IS NULL;
-- The queue, newest first, by status (GET /v1/moderation/flags).
CREATE INDEX IF NOT EXISTS flags_queue_idx ON flags (workspace_id, status, created_at DESC, id DESC);
-- A hard delete of a reporter finds its reports.
CREATE INDEX IF NOT EXISTS flags_reporter_idx ON flags (workspace_id, reporter_id);

-- Who may read an event besides its channel's members and its user: 'moderators' (the
-- workspace's moderators and admins). Such events have neither channel_id nor user_id, so an
-- older release reading this log shows them to the backend and webhooks only.
ALTER TABLE events ADD COLUMN IF NOT EXISTS audience text;
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_moderators_idx ON events (workspace_id, seq)
    WHERE audience = 'moderators';
