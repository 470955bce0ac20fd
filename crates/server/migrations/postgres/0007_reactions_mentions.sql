-- Reactions and mentions (PROTOCOL v1.2). One reaction per user per emoji
-- per message. A mention row per mentioned member of a group message,
-- keyed for counting a user's unread mentions in a conversation (seq
-- after their read position) with one index range.
CREATE TABLE reactions (
    message_id BIGINT NOT NULL REFERENCES messages (id),
    user_id    BIGINT NOT NULL,
    emoji      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);
CREATE TABLE mentions (
    user_id         BIGINT NOT NULL,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    seq             BIGINT NOT NULL,
    message_id      BIGINT NOT NULL REFERENCES messages (id),
    PRIMARY KEY (user_id, conversation_id, seq)
);
CREATE INDEX mentions_by_message ON mentions (message_id);
