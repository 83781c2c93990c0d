-- The event log gets its public seq after commit, from one sequencer at a time (db/events.py):
-- writers insert with a provisional negative seq (-nextval below), and the sequencer renumbers
-- committed rows above everything already published. Readers need no horizon, so a transaction
-- left open anywhere on the PostgreSQL server no longer holds live events back.
CREATE SEQUENCE IF NOT EXISTS event_provisional_seq;

-- Events about a message carry a reference to it, not a copy: reads resolve it to what the
-- message is now (edited, deleted or gone).
ALTER TABLE events ADD COLUMN IF NOT EXISTS message_id uuid;
-- Who caused the event (a message's author, a reaction's user): a hard delete removes its rows.
ALTER TABLE events ADD COLUMN IF NOT EXISTS actor_id text;

-- Per workspace: the highest published seq, and the highest one the retention job removed
-- (a reader behind it must resync).
CREATE TABLE event_positions (
    workspace_id uuid PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0,
    trimmed_seq bigint NOT NULL DEFAULT 0
);

-- Per channel: the highest published seq of its events, so that a reader finds the few
-- channels with something new without touching the others.
CREATE TABLE channel_event_positions (
    workspace_id uuid NOT NULL,
    channel_id text NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (workspace_id, channel_id)
);

INSERT INTO event_positions (workspace_id, last_seq)
SELECT workspace_id, max(seq) FROM events WHERE seq > 0 GROUP BY workspace_id;

INSERT INTO channel_event_positions (workspace_id, channel_id, last_seq)
SELECT workspace_id, channel_id, max(seq) FROM events
WHERE seq > 0 AND channel_id IS NOT NULL GROUP BY workspace_id, channel_id;
