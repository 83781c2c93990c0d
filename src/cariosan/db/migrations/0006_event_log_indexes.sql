-- cariosan: no-transaction
-- Built without blocking writes on big live tables (see db/schema.py, NO_TRANSACTION_MARKER).

-- The sequencer's queue: events not yet numbered (tiny: rows leave it within milliseconds).
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_unsequenced_idx ON events (seq) WHERE seq < 0;

-- A reader's own events (read.updated, member.*) without scanning the workspace's log.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_user_idx ON events (workspace_id, user_id, seq)
    WHERE user_id IS NOT NULL;

-- The retention job's scan of finished deliveries by age.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_finished_idx
    ON webhook_deliveries (updated_at) WHERE status <> 'pending';

-- Full-text search that starts from the workspace, so a small tenant's search never walks a
-- big tenant's matches (btree_gin lets a GIN index lead with the uuid column).
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_workspace_search_idx
    ON messages USING gin (workspace_id, search);
