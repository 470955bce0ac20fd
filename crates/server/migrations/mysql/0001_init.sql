-- Palaver schema, MySQL / MariaDB (InnoDB, utf8mb4). Times are Unix
-- milliseconds (UTC). Keys that must compare exactly (client_msg_id,
-- conv_key, the lower-cased username_key) use the binary collation.

CREATE TABLE settings (
    setting_key   VARCHAR(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    setting_value TEXT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE users (
    id            BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username      VARCHAR(64) NOT NULL,
    username_key  VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    password_hash TEXT,
    created_at    BIGINT      NOT NULL,
    UNIQUE KEY users_username_key (username_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE chat_groups (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(400) NOT NULL,
    owner_id   BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    CONSTRAINT chat_groups_owner FOREIGN KEY (owner_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE group_members (
    group_id  BIGINT      NOT NULL,
    user_id   BIGINT      NOT NULL,
    role      VARCHAR(16) NOT NULL,
    joined_at BIGINT      NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY group_members_by_user (user_id),
    CONSTRAINT group_members_group FOREIGN KEY (group_id) REFERENCES chat_groups (id),
    CONSTRAINT group_members_user FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT group_members_role CHECK (role IN ('owner', 'admin', 'member'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per conversation: the private pair (user_lo <= user_hi) or a group.
-- last_seq is the seq allocator, bumped in the same transaction as the
-- inserts; the last message is the one with seq = last_seq.
CREATE TABLE conversations (
    id       BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    conv_key VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    user_lo  BIGINT,
    user_hi  BIGINT,
    group_id BIGINT,
    last_seq BIGINT      NOT NULL DEFAULT 0,
    UNIQUE KEY conversations_key (conv_key),
    KEY conversations_by_lo (user_lo),
    KEY conversations_by_hi (user_hi),
    KEY conversations_by_group (group_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE messages (
    id                BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    conversation_id   BIGINT      NOT NULL,
    seq               BIGINT      NOT NULL,
    conversation_type VARCHAR(16) NOT NULL,
    sender_id         BIGINT      NOT NULL,
    receiver_id       BIGINT      NOT NULL,
    content           MEDIUMTEXT  NOT NULL,
    client_msg_id     VARCHAR(64) COLLATE utf8mb4_bin,
    created_at        BIGINT      NOT NULL,
    UNIQUE KEY messages_conversation_seq (conversation_id, seq),
    UNIQUE KEY messages_sender_client_msg_id (sender_id, client_msg_id),
    CONSTRAINT messages_conversation FOREIGN KEY (conversation_id) REFERENCES conversations (id),
    CONSTRAINT messages_type CHECK (conversation_type IN ('private', 'group'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
