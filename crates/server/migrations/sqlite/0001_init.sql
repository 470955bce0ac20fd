-- Palaver schema, SQLite. Times are Unix milliseconds (UTC).

-- Server-wide settings shared by every node on this database (the JWT secret).
CREATE TABLE settings (
    setting_key   TEXT PRIMARY KEY,
    setting_value TEXT NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL,
    -- lower-cased username: uniqueness and prefix search are case-insensitive
    username_key  TEXT    NOT NULL UNIQUE,
    -- NULL for users created on first use of an application-minted token
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE chat_groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    owner_id   INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id  INTEGER NOT NULL REFERENCES chat_groups(id),
    user_id   INTEGER NOT NULL REFERENCES users(id),
    role      TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

-- One row per conversation: the private pair (user_lo <= user_hi) or a group.
-- last_seq is the seq allocator, bumped in the same transaction as the
-- inserts; the last message is the one with seq = last_seq.
CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY,
    conv_key        TEXT    NOT NULL UNIQUE, -- 'p:<lo>:<hi>' or 'g:<group id>'
    user_lo         INTEGER,
    user_hi         INTEGER,
    group_id        INTEGER,
    last_seq        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_lo ON conversations (user_lo);
CREATE INDEX conversations_by_hi ON conversations (user_hi);
CREATE INDEX conversations_by_group ON conversations (group_id);

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    conversation_id   INTEGER NOT NULL REFERENCES conversations(id),
    seq               INTEGER NOT NULL,
    conversation_type TEXT    NOT NULL CHECK (conversation_type IN ('private', 'group')),
    sender_id         INTEGER NOT NULL,
    receiver_id       INTEGER NOT NULL,
    content           TEXT    NOT NULL,
    client_msg_id     TEXT,
    created_at        INTEGER NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id)
);
