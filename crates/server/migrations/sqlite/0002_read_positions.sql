-- Each user's read position per conversation; only ever moves forward.
CREATE TABLE read_positions (
    user_id         INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    read_seq        INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
