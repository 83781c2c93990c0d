-- Tenants and their server-side API secrets (stored as SHA-256 hashes, never in clear).
CREATE TABLE workspaces (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_secrets (
    id bigserial PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    secret_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- NULL: valid until rotated; set by a rotation with a grace period.
    expires_at timestamptz
);

CREATE INDEX api_secrets_workspace_idx ON api_secrets (workspace_id);

-- Facts about the deployment that operations report (last backup time, ...).
CREATE TABLE deployment_facts (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
