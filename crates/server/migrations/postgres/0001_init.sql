-- Palaver schema, PostgreSQL. Times are Unix milliseconds (UTC).

CREATE TABLE settings (
    setting_key   TEXT PRIMARY KEY,
    setting_value TEXT NOT NULL
);

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT   NOT NULL,
    username_key  TEXT   NOT NULL UNIQUE,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE chat_groups (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT   NOT NULL,
    owner_id   BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id  BIGINT NOT NULL REFERENCES chat_groups (id),
    user_id   BIGINT NOT NULL REFERENCES users (id),
    role      TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

-- One row per conversation: the private pair (user_lo <= user_hi) or a group.
-- last_seq is the seq allocator, bumped in the same transaction as the
-- inserts; the last message is the one with seq = last_seq.
CREATE TABLE conversations (
    id       BIGSERIAL PRIMARY KEY,
    conv_key TEXT   NOT NULL UNIQUE,
    user_lo  BIGINT,
    user_hi  BIGINT,
    group_id BIGINT,
    last_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_lo ON conversations (user_lo);
CREATE INDEX conversations_by_hi ON conversations (user_hi);
CREATE INDEX conversations_by_group ON conversations (group_id);

CREATE TABLE messages (
    id                BIGSERIAL PRIMARY KEY,
    conversation_id   BIGINT NOT NULL REFERENCES conversations (id),
    seq               BIGINT NOT NULL,
    conversation_type TEXT   NOT NULL CHECK (conversation_type IN ('private', 'group')),
    sender_id         BIGINT NOT NULL,
    receiver_id       BIGINT NOT NULL,
    content           TEXT   NOT NULL,
    client_msg_id     TEXT,
    created_at        BIGINT NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id)
);
