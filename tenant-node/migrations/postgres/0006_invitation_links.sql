-- Invitation links a member handed out: each is used at most once.
CREATE TABLE invitation_links (
    nonce TEXT PRIMARY KEY,
    issuer TEXT NOT NULL REFERENCES members (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT
);
