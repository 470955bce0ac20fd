-- Each user's read position per conversation; only ever moves forward.
CREATE TABLE read_positions (
    user_id         BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL,
    read_seq        BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id),
    CONSTRAINT read_positions_conversation FOREIGN KEY (conversation_id) REFERENCES conversations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
