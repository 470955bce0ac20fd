-- Each user's read position per conversation; only ever moves forward.
CREATE TABLE read_positions (
    user_id         BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    read_seq        BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
