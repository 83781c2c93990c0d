-- cariosan: no-transaction
-- Moderation (issue 14), pins and slow mode. Run one statement at a time (see db/schema.py,
-- NO_TRANSACTION_MARKER) so the pins index is built on the big messages table without blocking
-- writes; every statement is safe to repeat.

-- A pinned message: when and by whom (NULL pinned_by: the backend pinned it as itself).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS pinned_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS pinned_by text;

-- Slow mode (0: off) and freeze, per channel.
ALTER TABLE channels ADD COLUMN IF NOT EXISTS cooldown_seconds integer NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN IF NOT EXISTS frozen boolean NOT NULL DEFAULT false;

-- When the member last sent in the channel, on the database clock; only written while the
-- channel has a cooldown, so sends elsewhere pay nothing for it.
ALTER TABLE channel_members ADD COLUMN IF NOT EXISTS last_sent_at timestamptz;

-- A channel's pins, newest first (GET /v1/channels/{id}/pins); tiny: only pinned rows.
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_pinned_idx
    ON messages (workspace_id, channel_id, pinned_at DESC, id DESC) WHERE pinned_at IS NOT NULL;
