-- Attachments: one row per upload the server signed. The file itself lives in S3 (or the local
-- folder) under object_key = {workspace}/{id}/{filename}.
-- status: 'pending' (signed, maybe uploaded), 'uploaded' (seen in the store and attached to
-- message_id), 'deleting' (never referenced in time; the cleanup job is removing the file).
CREATE TABLE attachments (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    channel_id text NOT NULL,
    -- The uploader; NULL when the backend uploaded for itself.
    user_id text,
    filename text NOT NULL,
    content_type text NOT NULL,
    size bigint NOT NULL,
    object_key text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    message_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    referenced_at timestamptz,
    PRIMARY KEY (workspace_id, id)
);

-- The cleanup job's scan: unreferenced attachments by age, across workspaces.
CREATE INDEX attachments_unreferenced_idx ON attachments (created_at) WHERE message_id IS NULL;
CREATE INDEX attachments_message_idx ON attachments (workspace_id, message_id)
    WHERE message_id IS NOT NULL;
