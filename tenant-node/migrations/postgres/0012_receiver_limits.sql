-- What peers sent us, one row per counted arrival (a new friend request, a
-- reachability notice), so the receiver's hourly limits hold across
-- replicas sharing the database. Rows older than the window are pruned.
CREATE TABLE peer_arrivals (
    kind TEXT NOT NULL,
    peer TEXT NOT NULL,
    external_user TEXT NOT NULL,
    local_member TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX peer_arrivals_by_peer ON peer_arrivals (kind, peer, at);
CREATE INDEX peer_arrivals_by_user ON peer_arrivals (kind, external_user, at);
CREATE INDEX peer_arrivals_by_local ON peer_arrivals (kind, local_member, peer, at);

-- The company name each peer tenant last sent: one per tenant, shown for
-- every one of its members, never taken from a member's own profile.
CREATE TABLE peer_companies (
    tenant TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Failed logins, by member id and by source address, checked before any
-- password is hashed.
CREATE TABLE login_failures (
    member_id TEXT NOT NULL,
    address TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_failures_by_member ON login_failures (member_id, at);
CREATE INDEX login_failures_by_address ON login_failures (address, at);
