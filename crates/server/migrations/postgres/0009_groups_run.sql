-- Groups that can be run (PROTOCOL v1.2). A system message records each
-- group change in the group's own seq: system_change holds the change as JSON
-- (NULL for what users send). A member who leaves or is removed keeps
-- their row with left_seq, the seq of the system message of their
-- departure, which bounds the history they may read; re-added, it is
-- cleared. A deleted group keeps its row, with deleted_at set, so that
-- its former members can still read its history.
ALTER TABLE messages ADD COLUMN system_change TEXT;
ALTER TABLE group_members ADD COLUMN left_seq BIGINT;
ALTER TABLE chat_groups ADD COLUMN deleted_at BIGINT;
