-- Files posted to rooms. The uploader's node holds the bytes from the
-- upload; other participating nodes hold the metadata from the relayed
-- event and fetch the bytes over the bridge when a member first asks.
CREATE TABLE attachments (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    uploader TEXT NOT NULL,
    -- The event that posted it, once posted.
    event_id TEXT,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    -- NULL until fetched, on nodes other than the uploader's.
    data BLOB,
    created_at BIGINT NOT NULL
);
CREATE INDEX attachments_by_room ON attachments (room_id);
