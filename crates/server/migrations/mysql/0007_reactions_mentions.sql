-- Reactions and mentions (PROTOCOL v1.2). One reaction per user per emoji
-- per message (the emoji compared byte for byte). A mention row per
-- mentioned member of a group message, keyed for counting a user's unread
-- mentions in a conversation (seq after their read position) with one
-- index range.
CREATE TABLE reactions (
    message_id BIGINT      NOT NULL,
    user_id    BIGINT      NOT NULL,
    emoji      VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji),
    CONSTRAINT reactions_message FOREIGN KEY (message_id) REFERENCES messages (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
CREATE TABLE mentions (
    user_id         BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    message_id      BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq),
    KEY mentions_by_message (message_id),
    CONSTRAINT mentions_message FOREIGN KEY (message_id) REFERENCES messages (id)
) ENGINE = InnoDB;
