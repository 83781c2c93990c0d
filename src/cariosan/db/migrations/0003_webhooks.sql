-- Webhooks: the endpoints a workspace registered and the outbox of deliveries to them.
-- A delivery row is written in the same transaction as its event (db/events.py), so an event
-- that committed always has its deliveries, and a rolled-back one never has any.

CREATE TABLE webhook_endpoints (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    url text NOT NULL,
    -- Event types to deliver, or '{*}' for every one.
    events text[] NOT NULL,
    -- 'whsec_' + base64, kept as given: it must be recoverable to sign.
    secret text NOT NULL,
    -- After a rotation the old secret still signs (next to the new one) until this time.
    previous_secret text,
    previous_secret_expires_at timestamptz,
    enabled boolean NOT NULL DEFAULT true,
    -- Why the endpoint was disabled (the receiver answered 410 Gone).
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);

CREATE INDEX webhook_endpoints_enabled_idx ON webhook_endpoints (workspace_id) WHERE enabled;

CREATE TABLE webhook_deliveries (
    workspace_id uuid NOT NULL,
    -- The `webhook-id` header: stable across retries, the receiver's idempotency key.
    id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    event_type text NOT NULL,
    seq bigint NOT NULL,
    -- The exact request body, so that every retry sends the same bytes.
    body text NOT NULL,
    -- pending (due at next_attempt_at, or in flight until then), succeeded or failed.
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Set when a worker claims the row; only that claim may record the attempt's outcome.
    lease uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, endpoint_id)
        REFERENCES webhook_endpoints (workspace_id, id) ON DELETE CASCADE
);

CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx
    ON webhook_deliveries (workspace_id, endpoint_id, created_at DESC, id DESC);
