-- What peers told us about their members' reachability: a member (or, with
-- user_id '*@TENANT', every member of that tenant) their company no longer
-- lets talk with other companies shows as "unknown" and gets no traffic.
CREATE TABLE external_reachability (
    user_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    reachable BIGINT NOT NULL,
    at BIGINT NOT NULL
);
