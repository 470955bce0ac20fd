-- Account life cycle (PROTOCOL v1.3). A token carries the token_generation
-- of its user when it was issued; logging out everywhere, changing the
-- password or disabling the account bumps it, and every older token fails.
-- One token logged out is kept in revoked_tokens (by its jti) until it
-- would have expired anyway. credential_changes is the log every node
-- polls to drop its cached token state and close the sockets whose token
-- no longer holds; rows older than a day are pruned.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

CREATE TABLE revoked_tokens (
    jti        BIGINT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_user ON revoked_tokens (user_id);

CREATE TABLE credential_changes (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);
