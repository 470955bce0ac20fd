-- Blocking (PROTOCOL v1.2): while blocker_id blocks blocked_id, neither
-- writes to their private conversation and neither sees the other's
-- presence. Read both ways: by blocker (the primary key) and by blocked.
CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) ENGINE = InnoDB;
CREATE INDEX blocks_by_blocked ON blocks (blocked_id);
