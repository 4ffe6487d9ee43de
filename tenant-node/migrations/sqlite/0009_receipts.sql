-- What a room's host reports back to the node of a message's sender: the
-- message's delivery to each other participating node, once all are done.
CREATE TABLE receipts (
    event_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'refused')),
    reason TEXT,
    PRIMARY KEY (event_id, peer)
);
