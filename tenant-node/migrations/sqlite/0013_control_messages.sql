-- Control messages (reachability notices, profile syncs, CA announcements)
-- travel in the per-peer outbox, in order with room events. They belong to
-- no room, so room_id may be NULL; `topic` names what a control message is
-- about ("profile:alice@a.example"), so that a newer one replaces an older
-- one still queued.
CREATE TABLE outbox_next (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    peer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- NULL for a control message.
    room_id TEXT,
    -- The host's sequence number; 0 when the envelope goes to the host, and
    -- for a control message.
    host_seq BIGINT NOT NULL,
    -- The relayed event (sender, body, room snapshot), or the control
    -- message, as JSON.
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'refused')),
    reason TEXT,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    done_at BIGINT,
    topic TEXT
);
INSERT INTO outbox_next (id, peer, event_id, room_id, host_seq, payload, state, reason,
                         attempts, created_at, done_at)
    SELECT id, peer, event_id, room_id, host_seq, payload, state, reason, attempts,
           created_at, done_at FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_next RENAME TO outbox;
CREATE INDEX outbox_queue ON outbox (peer, state, id);
CREATE INDEX outbox_by_event ON outbox (event_id);
CREATE INDEX outbox_by_topic ON outbox (peer, topic) WHERE topic IS NOT NULL;

-- Control messages a peer relayed that this node applied, so that one sent
-- again (its acknowledgement lost) is applied once.
CREATE TABLE peer_controls (
    peer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (peer, event_id)
);

-- The requester's photo as sent with an incoming friend request, so that
-- the member who accepts has it at once.
ALTER TABLE friend_requests ADD COLUMN photo BLOB;
ALTER TABLE friend_requests ADD COLUMN photo_type TEXT;
