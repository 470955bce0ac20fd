-- A user's read position in a conversation is never below the seq of their
-- own last message there (sending reads up to the message sent), so the
-- unread count is last_seq - read_seq with no COUNT. The own last seq is
-- read through this index: one probe, however many messages there are.
-- Existing data needs no backfill; the position is derived, not stored.
CREATE INDEX messages_conversation_sender_seq ON messages (conversation_id, sender_id, seq);
