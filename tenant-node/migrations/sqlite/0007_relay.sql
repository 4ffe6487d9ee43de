-- Rooms shared across companies: which node hosts a room, the durable
-- per-peer outbox, and events a member sent to a room hosted elsewhere that
-- the host has not sequenced yet.

-- The tenant whose node hosts the room and orders its events; NULL when this
-- node is the host.
ALTER TABLE rooms ADD COLUMN host TEXT;

-- Every envelope this node relays to a peer, in the order it must arrive.
-- Rows stay after delivery: they are the per-peer delivery record.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    peer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    -- The host's sequence number; 0 when the envelope goes to the host.
    host_seq BIGINT NOT NULL,
    -- The relayed event (sender, body, room snapshot) as JSON.
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'refused')),
    reason TEXT,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    done_at BIGINT
);
CREATE INDEX outbox_queue ON outbox (peer, state, id);
CREATE INDEX outbox_by_event ON outbox (event_id);

-- Sent by one of our members into a room hosted elsewhere; waiting for the
-- host's sequence number. Removed when the sequenced event comes back.
CREATE TABLE pending_events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    idempotency_key TEXT,
    body TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE UNIQUE INDEX pending_idempotency ON pending_events (room_id, sender, idempotency_key);
