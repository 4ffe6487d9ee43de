-- Control messages (reachability notices, profile syncs, CA announcements)
-- travel in the per-peer outbox, in order with room events. They belong to
-- no room, so room_id may be NULL; `topic` names what a control message is
-- about ("profile:alice@a.example"), so that a newer one replaces an older
-- one still queued.
ALTER TABLE outbox ALTER COLUMN room_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN topic TEXT;
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
ALTER TABLE friend_requests ADD COLUMN photo BYTEA;
ALTER TABLE friend_requests ADD COLUMN photo_type TEXT;
