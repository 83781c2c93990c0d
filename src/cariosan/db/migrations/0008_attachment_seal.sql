-- cariosan: no-transaction
-- Each statement is safe to run again: a boot that died half-way finishes the file next time.

-- When a message first refers to an attachment, the server copies the upload to a key of its
-- own that no presigned PUT names, and points object_key at that copy (so older releases, which
-- serve object_key, serve the immutable copy too). checksum is what the copy was verified
-- against: 'etag:<S3 ETag>' or 'sha256:<hex>' (local store). NULL: never copied (pending, or
-- sent before this release).
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS checksum text;
-- When the cleanup job removed what else was left under {workspace}/{id}/ (the upload itself,
-- re-uploads through a URL still valid after the send, copies of failed sends).
ALTER TABLE attachments ADD COLUMN IF NOT EXISTS tidied_at timestamptz;

-- The cleanup job's scan for sent attachments whose leftovers are still to be removed.
CREATE INDEX CONCURRENTLY IF NOT EXISTS attachments_untidy_idx ON attachments (created_at)
    WHERE checksum IS NOT NULL AND tidied_at IS NULL;
