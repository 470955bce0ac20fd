-- The reference server's database. bench/run.sh loads it before each
-- reference scenario (it drops and recreates both tables):
--   mariadb -uroot < bench/reference/schema.sql
-- palaver-bench --target reference writes group_membership itself
-- (--reference-mysql-url, default mysql://root@127.0.0.1:3306/chat_system).
CREATE DATABASE IF NOT EXISTS chat_system;
USE chat_system;
DROP TABLE IF EXISTS message;
DROP TABLE IF EXISTS group_membership;
CREATE TABLE message (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  conversation_type VARCHAR(16) NOT NULL,
  sender_id BIGINT NOT NULL,
  receiver_id BIGINT NOT NULL,
  content TEXT NOT NULL,
  created_at DATETIME(3) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE group_membership (
  group_id BIGINT NOT NULL,
  user_id BIGINT NOT NULL,
  PRIMARY KEY (group_id, user_id)
) ENGINE=InnoDB;
