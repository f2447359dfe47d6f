-- Cluster coordination in the database (portable: SQLite and PostgreSQL).
--
-- cluster_leases: a lease row per job group. Without Redis the replicas
-- sharing this database elect their leader here: plain row updates, no
-- session-level advisory locks, so it works through PgBouncer's transaction
-- pooling.
-- cluster_fences: the highest fencing token a leader has written with. A
-- leader write checks and raises it in its own transaction, so the write of
-- a replica that lost the lease (and whose token is older) is refused.
CREATE TABLE cluster_leases (
    name          TEXT PRIMARY KEY,
    holder        TEXT,
    token         BIGINT NOT NULL DEFAULT 0,
    expires_at_ms BIGINT NOT NULL DEFAULT 0
);
INSERT INTO cluster_leases (name, holder, token, expires_at_ms) VALUES ('leader', NULL, 0, 0);

CREATE TABLE cluster_fences (
    name  TEXT PRIMARY KEY,
    token BIGINT NOT NULL DEFAULT 0
);
INSERT INTO cluster_fences (name, token) VALUES ('leader', 0);
