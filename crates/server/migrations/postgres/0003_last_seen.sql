-- When each user was last seen online (Unix ms); NULL if never.
ALTER TABLE users ADD COLUMN last_seen BIGINT;
