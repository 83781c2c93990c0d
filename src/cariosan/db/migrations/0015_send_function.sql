-- The common send (db/messages.py, send_plain_batch) as a function, for one reason: the
-- function's own setting keeps one generic plan of its statement per connection. Sent as a
-- prepared statement, it was planned anew on every call: with its arrays' lengths known, every
-- custom plan looked cheaper than the generic one, so PostgreSQL never switched. Measured on
-- the reference machine, the statement cost the backend 0.9-1.4 ms of CPU per call that way,
-- and 0.23-0.28 ms with the generic plan. Never changed in place (docs/operations.md,
-- Rollback): a release that needs another body adds a function under a new name.
CREATE OR REPLACE FUNCTION cariosan_send_plain(
    p_workspace_ids uuid[], p_ids uuid[], p_channel_ids text[], p_user_ids text[],
    p_texts text[], p_data text[]
) RETURNS TABLE (
    workspace_id uuid, id uuid, channel_id text, user_id text, text text, parent_id uuid,
    reply_count integer, mentions text[], attachment_ids uuid[], data jsonb,
    created_at timestamptz, edited_at timestamptz, deleted_at timestamptz, shadow boolean,
    pinned_at timestamptz, pinned_by text
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH wanted AS (
        SELECT * FROM unnest(p_workspace_ids, p_ids, p_channel_ids, p_user_ids, p_texts, p_data)
            AS w (workspace_id, id, channel_id, user_id, text, data)
    ),
    access AS (
        SELECT w.* FROM wanted w
        JOIN channels c ON c.workspace_id = w.workspace_id AND c.id = w.channel_id
        WHERE c.deleted_at IS NULL AND NOT c.frozen AND c.cooldown_seconds <= 0
          -- The whole primary key in one EXISTS. Without statistics (a fresh deployment), a
          -- join was planned through the user's index instead, reading every membership of
          -- the sender (1,000 rows for a user in 1,000 channels) to keep one.
          AND EXISTS (
              SELECT 1 FROM channel_members cm
              WHERE cm.workspace_id = w.workspace_id AND cm.channel_id = w.channel_id
                AND cm.user_id = w.user_id
          )
          AND NOT EXISTS (
              SELECT 1 FROM bans b
              WHERE b.workspace_id = w.workspace_id AND b.user_id = w.user_id
                AND coalesce(b.channel_id, '') IN ('', w.channel_id)
                AND (b.expires_at IS NULL OR b.expires_at > now())
          )
    ),
    ins AS (
        INSERT INTO messages AS m
            (workspace_id, id, channel_id, user_id, text, parent_id, mentions, data,
             attachment_ids, shadow)
        SELECT a.workspace_id, a.id, a.channel_id, a.user_id, a.text, NULL, '{}'::text[],
               a.data::jsonb, '{}'::uuid[], false
        FROM access a ORDER BY a.workspace_id, a.id
        ON CONFLICT (workspace_id, id) DO NOTHING
        RETURNING m.workspace_id, m.id, m.channel_id, m.user_id, m.text, m.parent_id, m.reply_count,
            m.mentions, m.attachment_ids, m.data, m.created_at, m.edited_at, m.deleted_at, m.shadow,
            m.pinned_at, m.pinned_by
    ),
    event AS (
        INSERT INTO events
            (workspace_id, seq, type, channel_id, user_id, payload, message_id, actor_id, audience)
        SELECT i.workspace_id, -nextval('event_provisional_seq'), 'message.new', i.channel_id, NULL,
               '{}'::jsonb, i.id, i.user_id, NULL
        FROM (SELECT * FROM ins ORDER BY workspace_id, created_at, id) i
    ),
    newest AS (
        SELECT DISTINCT ON (workspace_id, channel_id) workspace_id, channel_id, id, created_at
        FROM ins ORDER BY workspace_id, channel_id, created_at DESC, id DESC
    ),
    locked AS MATERIALIZED (
        SELECT c.workspace_id, c.id FROM channels c
        WHERE (c.workspace_id, c.id) IN (SELECT workspace_id, channel_id FROM newest)
        ORDER BY c.workspace_id, c.id
        FOR UPDATE
    ),
    moved AS (
        UPDATE channels c SET last_message_id = n.id, last_message_at = n.created_at
        FROM newest n JOIN locked l ON l.workspace_id = n.workspace_id AND l.id = n.channel_id
        WHERE c.workspace_id = n.workspace_id AND c.id = n.channel_id
          AND (c.last_message_at IS NULL
               OR (c.last_message_at, c.last_message_id) < (n.created_at, n.id))
    )
    SELECT * FROM ins;
END
$function$;
