-- Friend requests between members of different companies, and the external
-- contacts they create.

CREATE TABLE friend_requests (
    -- Assigned by the requester's node; the same id on both nodes.
    id TEXT PRIMARY KEY,
    -- Our member: the requester (outgoing) or the recipient (incoming).
    local_member TEXT NOT NULL REFERENCES members (id),
    external_user TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'declined')),
    -- The other side's public profile as sent with the request or answer.
    display_name TEXT NOT NULL,
    company TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX friend_requests_by_member ON friend_requests (local_member, state);

CREATE TABLE external_contacts (
    owner TEXT NOT NULL REFERENCES members (id),
    user_id TEXT NOT NULL,
    -- Synced from the user's company; read-only here.
    display_name TEXT NOT NULL,
    photo BYTEA,
    photo_type TEXT,
    company TEXT NOT NULL,
    -- The owner's own fields (name, phones, emails, ...), as JSON.
    fields TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    synced_at BIGINT NOT NULL,
    -- Set while the contact is in the trash.
    trashed_at BIGINT,
    PRIMARY KEY (owner, user_id)
);
