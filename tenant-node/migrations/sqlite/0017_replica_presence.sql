-- The replicas alive now, each writing its heartbeat: a replica holding
-- more than its share of the queues' leases (the queues over the replicas
-- alive, rounded up) gives one up, and one holding fewer takes it.
CREATE TABLE replica_presence (
    replica TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
