-- Several replicas of one node share a database: each peer's queue (and
-- LINE's, and the LINE inbox) is worked by the one replica holding its
-- lease. `epoch` grows each time the lease changes hands, and a holder
-- acknowledges only while its epoch is current, so a stalled holder that
-- lost the lease cannot.
CREATE TABLE deliverer_leases (
    queue TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
