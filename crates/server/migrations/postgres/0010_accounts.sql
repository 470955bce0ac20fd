-- Account life cycle (PROTOCOL v1.3). A token carries the token_generation
-- of its user when it was issued; logging out everywhere, changing the
-- password or disabling the account bumps it, and every older token fails.
-- tokens_revoked_at is when it was last bumped: a token an application
-- minted (no generation) is revoked if issued before it. One token logged
-- out is kept in revoked_tokens (by its jti) until it
-- would have expired anyway. change_log is what every node polls: a
-- user's credentials changed (drop the cached token state, end the
-- sockets whose token no longer holds), or a group's members changed
-- outside a server (`palaver admin`: drop the cached roster). Rows older
-- than a day are pruned.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE users ADD COLUMN tokens_revoked_at BIGINT;

CREATE TABLE revoked_tokens (
    jti        BIGINT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_user ON revoked_tokens (user_id);

CREATE TABLE change_log (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NULL,
    group_id   BIGINT NULL,
    changed_at BIGINT NOT NULL
);
