-- A conversation's last seq is the highest seq among its messages (read
-- through the unique (conversation_id, seq) index); the message writer
-- remembers it between batches instead of bumping a counter row in every
-- transaction. The counter column is no longer kept.
ALTER TABLE conversations DROP COLUMN last_seq;
