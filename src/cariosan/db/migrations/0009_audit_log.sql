-- Moderation (issue 14): the audit log. Every moderation and admin action (role changes, bans,
-- flag resolutions, deletes by someone other than the author, secret rotations, token
-- revocations, exports, hard deletes) is one row: who did what to whom, when, and why.

CREATE TABLE audit_log (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    -- "backend" (the API secret acting as itself), "operator" (the CLI), or a user id.
    actor text NOT NULL,
    action text NOT NULL,
    -- What was acted on, as "kind:id" (user:alice, channel:general, message:<uuid>, ...).
    target text,
    reason text,
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workspace_id, id)
);

-- Newest first, whole log or by actor or by action (GET /v1/audit).
CREATE INDEX audit_log_time_idx ON audit_log (workspace_id, created_at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (workspace_id, actor, created_at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (workspace_id, action, created_at DESC, id DESC);
