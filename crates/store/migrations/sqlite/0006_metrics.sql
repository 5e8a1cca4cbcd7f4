-- Metrics: Gorilla-compressed chunks per series and tier (0 = the flush interval, then the rollups), and the
-- write-ahead rows each flush appends (its new points, one row per tier) until their points are in chunks.
-- `source` is the replica that received the points (its data folder's replica.id): replicas sharing a database
-- never overwrite each other's chunks, queries merge them, and each replays only its own write-ahead rows.
CREATE TABLE metric_chunks (
    series   TEXT    NOT NULL,
    source   TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    tier     INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms   INTEGER NOT NULL,
    points   INTEGER NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (series, tier, source, start_ms)
);
CREATE INDEX metric_chunks_by_end ON metric_chunks (tier, end_ms);
CREATE TABLE metric_wal (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    tier INTEGER NOT NULL,
    t_ms INTEGER NOT NULL,
    data BLOB NOT NULL
);
