-- Blocking (PROTOCOL v1.2): while blocker_id blocks blocked_id, neither
-- writes to their private conversation and neither sees the other's
-- presence. Read both ways: by blocker (the primary key) and by blocked.
CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL,
    blocked_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_by_blocked ON blocks (blocked_id);
