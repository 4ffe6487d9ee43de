-- Foundation: company settings, members, sessions, rooms and their events.
-- PostgreSQL twin of migrations/sqlite/0001_foundation.sql (BYTEA for BLOB).
-- Times are unix milliseconds (BIGINT).

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE members (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    photo BYTEA,
    photo_type TEXT,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended')),
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_member ON sessions (member_id);

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    name TEXT NOT NULL,
    -- The group master; NULL for direct rooms and for emptied group rooms.
    master TEXT,
    -- For direct rooms, the two member ids sorted and joined by a space.
    direct_key TEXT UNIQUE,
    last_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_event_at BIGINT NOT NULL
);

CREATE TABLE room_members (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    member_id TEXT NOT NULL,
    joined_seq BIGINT NOT NULL,
    joined_at BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL,
    PRIMARY KEY (room_id, member_id)
);
CREATE INDEX room_members_by_member ON room_members (member_id);

-- Every room event ever stored; never deleted (history and audit).
CREATE TABLE events (
    room_id TEXT NOT NULL REFERENCES rooms (id),
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    at BIGINT NOT NULL,
    idempotency_key TEXT,
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX events_idempotency ON events (room_id, sender, idempotency_key);
