-- Peering: the other companies' nodes this node trusts, and the one-time
-- invitations it issued.

CREATE TABLE peers (
    tenant TEXT PRIMARY KEY,
    -- host:port of the peer's bridge.
    endpoint TEXT NOT NULL,
    -- The pinned CA certificates (PEM): one, or two during a CA change-over.
    ca_pem TEXT NOT NULL,
    -- 'invitation' (peered by invite/accept) or 'config' (declared in node.toml).
    source TEXT NOT NULL CHECK (source IN ('invitation', 'config')),
    created_at BIGINT NOT NULL,
    last_contact_at BIGINT,
    last_error TEXT,
    last_error_at BIGINT
);

CREATE TABLE peer_invitations (
    -- SHA-256 of the secret; the secret itself is only in the token.
    secret_hash TEXT PRIMARY KEY,
    -- When set, only this tenant may redeem it.
    for_tenant TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT
);
