-- Chat with LINE users through the company's LINE Official Account.
-- The admin's settings are rows of `settings` (line.enabled, line.auto_grant,
-- line.restrict_files, line.greeting). A LINE user takes part in rooms as a
-- member id of the reserved tenant `line.invalid` (`u<id>@line.invalid`);
-- what LINE sends is written to `line_inbox` before LINE is answered, and
-- what goes to LINE waits in `outbox` under that tenant.

-- Members the admin permits to talk with LINE users.
CREATE TABLE line_connected_members (
    member_id TEXT PRIMARY KEY REFERENCES members (id),
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL
);

-- LINE users who followed the account. Name and photo are LINE's.
CREATE TABLE line_users (
    -- LINE's user id: "U" and 32 hex digits.
    user_id TEXT PRIMARY KEY,
    -- The same user as a room member: u<hex>@line.invalid.
    member_id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    photo BYTEA,
    photo_type TEXT,
    following BIGINT NOT NULL,
    -- Whom they write to in the 1:1 chat, when bound to several members.
    writes_to TEXT,
    followed_at BIGINT NOT NULL,
    synced_at BIGINT NOT NULL
);

-- A LINE user bound to one of our members by that member's code: their
-- 1:1 room.
CREATE TABLE line_bindings (
    line_user TEXT NOT NULL REFERENCES line_users (user_id),
    member_id TEXT NOT NULL REFERENCES members (id),
    room_id TEXT NOT NULL REFERENCES rooms (id),
    bound_at BIGINT NOT NULL,
    PRIMARY KEY (line_user, member_id)
);
CREATE INDEX line_bindings_by_member ON line_bindings (member_id);

-- LINE groups the account was added to; linked to a room by the first
-- member's code posted there.
CREATE TABLE line_groups (
    group_id TEXT PRIMARY KEY,
    room_id TEXT UNIQUE REFERENCES rooms (id),
    name TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    -- Set when the account left or was removed from the group.
    left_at BIGINT
);

-- The LINE chat a room talks to: a user id (1:1) or a group id.
ALTER TABLE rooms ADD COLUMN line_chat TEXT;

-- Every webhook event, stored before LINE gets its 200 and processed after.
-- `webhook_event_id` drops LINE's redeliveries.
CREATE TABLE line_inbox (
    id BIGSERIAL PRIMARY KEY,
    webhook_event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT,
    outcome TEXT
);
CREATE INDEX line_inbox_unprocessed ON line_inbox (processed_at, id);

-- LINE's message ids of what LINE users sent, so an unsend finds its event.
CREATE TABLE line_messages (
    line_message_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq BIGINT NOT NULL
);
