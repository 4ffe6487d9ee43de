-- External messaging policy, notices to members, and the audit log.

-- Members the admin allowed to talk with other companies.
CREATE TABLE connected_members (
    member_id TEXT PRIMARY KEY REFERENCES members (id),
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL
);

-- External users a member blocked: nothing from them is delivered.
CREATE TABLE blocks (
    member_id TEXT NOT NULL REFERENCES members (id),
    blocked TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (member_id, blocked)
);

-- Notices for members (granted, revoked, ...), shown on their live stream.
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX notices_by_member ON notices (member_id, at);

-- Append-only and hash-chained: each row's hash covers the previous hash.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    member TEXT,
    external_user TEXT,
    peer_tenant TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_member ON audit_log (member, seq);
CREATE INDEX audit_by_external ON audit_log (external_user, seq);
CREATE INDEX audit_by_peer ON audit_log (peer_tenant, seq);
CREATE INDEX audit_by_time ON audit_log (at);

-- The chain's head: one row, locked by every append so appends serialise.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
