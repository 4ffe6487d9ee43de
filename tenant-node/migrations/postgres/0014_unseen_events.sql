-- Events of a room kept out of one member's sight: a message from another
-- company's member whom this node's half does not admit with that member
-- (blocked, deleted as a contact, or the member not connected), while the
-- room's other members see it. Written with the event, read by history,
-- live streams, unread counts and downloads.
CREATE TABLE unseen_events (
    room_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (room_id, member_id, seq)
);
