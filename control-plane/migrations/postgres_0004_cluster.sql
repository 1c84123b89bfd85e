-- Origin cluster: the nodes sharing this database (each re-registers on a heartbeat
-- and counts as gone once expires_at, unix milliseconds, has passed) and which node
-- holds each live stream (one row per stream name: the newest instance wins).
CREATE TABLE cluster_nodes (
    id TEXT PRIMARY KEY,
    advertise TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE cluster_streams (
    stream TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    instance BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cluster_streams_node ON cluster_streams (node_id);
