-- The message life cycle (PROTOCOL v1.2): a message can be edited and
-- deleted (a tombstone keeps its id and seq), can answer an earlier one by
-- seq, and carries the conversation's change position of its last change.
-- Each conversation counts its changes in last_change, bumped under the
-- row's lock in the change's own transaction, so change_seq is gap-free
-- and in commit order per conversation; catch-up reads the index below.
ALTER TABLE messages
    ADD COLUMN edited_at BIGINT NULL,
    ADD COLUMN deleted_at BIGINT NULL,
    ADD COLUMN reply_seq BIGINT NULL,
    ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0,
    ADD INDEX messages_conversation_change (conversation_id, change_seq);
ALTER TABLE conversations ADD COLUMN last_change BIGINT NOT NULL DEFAULT 0;
